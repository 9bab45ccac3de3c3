"""Commands packed for a connection that is written directly, without redis-py's per-command path, and its
replies read.

redis-py 8 passes every argument through its Python encoder before handing the command to hiredis's C packer;
a job's finish carries about forty arguments, and that loop cost a no-op task more than the rest of the write.
hiredis packs str (as UTF-8), bytes, int and float to the very same bytes, so when the connection's encoder is
UTF-8 and strict the arguments go to hiredis as they are. Anything hiredis refuses (a bool, a memoryview) goes
through redis-py's packer, which packs it or raises the error redis-py would. Command names are one word.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any, cast

import redis

try:
    import hiredis
    from redis.connection import HiredisRespSerializer
except ImportError:  # redis-py then packs commands in Python
    hiredis = None  # type: ignore[assignment]


def read_reply(wire: redis.Connection) -> Any:
    """The next reply on ``wire``, an error reply returned rather than raised: it was read whole, so the replies after
    it can still be read."""
    try:
        return wire.read_response()
    except redis.ResponseError as exc:
        return exc


class Packer:
    """Packs commands for one connection into the bytes redis-py would send, as one buffer."""

    def __init__(self, wire: redis.Connection) -> None:
        self._wire = wire
        encoder = getattr(wire, "encoder", None)
        self._native = (
            hiredis is not None
            and type(getattr(wire, "_command_packer", None)) is HiredisRespSerializer
            and encoder is not None
            and codecs.lookup(encoder.encoding).name == "utf-8"
            and encoder.encoding_errors == "strict"
        )

    def pack(self, commands: Sequence[tuple[Any, ...]]) -> list[bytes]:
        if self._native:
            try:
                return [b"".join([hiredis.pack_command(command) for command in commands])]
            except Exception:  # redis-py's packer raises its own error for these arguments just below
                pass
        if len(commands) == 1:
            return cast(list[bytes], self._wire.pack_command(*commands[0]))
        return cast(list[bytes], self._wire.pack_commands(commands))
