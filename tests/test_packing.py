"""Commands written directly (the enqueue script's call, the worker's batched calls) carry exactly the bytes
redis-py would send for the same arguments, whatever the connection's encoding."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.exceptions import DataError

from task_processor.packing import Packer

ARGUMENTS: list[Any] = [
    "EVALSHA",
    "0123abcd",
    3,
    "rq:job:é-ünïcode",
    b"\x00\xffraw bytes",
    0,
    -7,
    123456789012345678901234567890,
    0.1,
    1 / 3,
    1e20,
    -2.5e-8,
    "",
    "a b c",
]


def _redis_py(connection: redis.Connection, commands: list[tuple[Any, ...]]) -> bytes:
    return b"".join(connection.pack_commands(commands))


@pytest.mark.parametrize("encoding", ["utf-8", "UTF8", "latin-1"])
def test_the_same_bytes_as_redis_py(encoding: str) -> None:
    wire = redis.Connection(encoding=encoding)
    commands = [tuple(ARGUMENTS), ("WAIT", 1, 100)]
    if encoding == "latin-1":
        commands[0] = tuple(a.replace("ü", "u") if isinstance(a, str) else a for a in ARGUMENTS)  # latin-1 can encode
    assert b"".join(Packer(wire).pack(commands)) == _redis_py(wire, commands)
    assert b"".join(Packer(wire).pack(commands[:1])) == _redis_py(wire, commands[:1])


def test_a_connection_in_another_encoding_gets_its_own_bytes() -> None:
    wire = redis.Connection(encoding="latin-1")
    packed = b"".join(Packer(wire).pack([("SET", "k", "é")]))
    assert packed == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n\xe9\r\n"  # latin-1's one byte, not UTF-8's two


def test_arguments_redis_py_refuses_are_refused_as_redis_py_refuses_them() -> None:
    wire = redis.Connection()
    with pytest.raises(DataError, match="bool"):
        Packer(wire).pack([("SET", "k", True)])
    with pytest.raises(DataError, match="NoneType"):
        Packer(wire).pack([("SET", "k", None)])
