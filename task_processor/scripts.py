"""The project's Redis scripts: one ``.lua`` file each under ``task_processor/lua``, shipped in the wheel.

A script that shares functions with others names the library files it needs on ``-- include: lib/<name>.lua``
lines at its top; their text goes before its own, in that order (Redis scripts cannot include one another).
Each script is registered once per client and called by SHA, loaded again when Redis answers NOSCRIPT (after a
restart), which redis-py's ``Script`` does.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

import redis
from redis.commands.core import Script

_INCLUDE = re.compile(r"-- include: (\S+\.lua)\n")


@cache
def source(name: str) -> str:
    """The text Redis runs for ``lua/<name>.lua``: its included libraries, then itself."""
    text = files("task_processor").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    parts = [source(include.removesuffix(".lua")) for include in _INCLUDE.findall(text)]
    return "\n".join([*parts, text])


def register(connection: redis.Redis, name: str) -> Script:
    """``lua/<name>.lua`` as a script of ``connection``, called by SHA."""
    return connection.register_script(source(name))
