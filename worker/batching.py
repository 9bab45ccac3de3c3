"""The Lua calls of a process's task slots, sent to Redis together.

With ``--concurrency N``, N slots start and finish jobs at the same time. A round trip of its own for each call
would cost a slot more than a short task does: redis-py spends more Python on one call than on one more command
in a pipeline, and each round trip costs a pair of context switches. So a slot that finds another slot's batch
on the wire queues its call; the next slot to take the wire sends every queued call in one pipeline, and each
slot gets its own reply or error (flat combining: no thread of its own, and no wait when only one slot calls).
The calls of a batch are independent scripts, not a transaction, exactly as if each slot had sent its own.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class _Call:
    __slots__ = ("args", "error", "keys", "reply", "script", "sent", "wake")

    def __init__(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> None:
        self.script, self.keys, self.args = script, keys, args
        self.reply: Any = None
        self.error: BaseException | None = redis.ConnectionError("the batch carrying this call was interrupted")
        self.sent = False
        self.wake = threading.Event()  # set when the call was sent, or when its thread is to send the next batch

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.reply


class BatchedCalls:
    """Lua script calls from any thread, those made at the same time sent in one pipeline.

    The calls go out on a connection of their own, written and read directly: redis-py's per-command path (pool
    checkout, argument checks, command lookup) costs more than a short task. Each waiting thread sleeps on an
    event of its own, woken once: when its call was sent, or when the lead passes to it."""

    def __init__(self, connection: redis.Redis) -> None:
        self._wire_connection = cast(redis.Connection, connection.connection_pool.make_connection())
        self._queued: list[_Call] = []
        self._sending = False  # a thread is sending a batch; calls made meanwhile wait in _queued
        self._lock = threading.Lock()

    def call(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run ``script`` and return its reply (or raise its error), as ``script(keys, args)`` would."""
        call = _Call(script, keys, args)
        with self._lock:
            self._queued.append(call)
            leads, self._sending = not self._sending, True
        if not leads:
            call.wake.wait()
            if call.sent:
                return call.outcome()
        # This thread sends everything queued, its own call included, then passes the lead to the first call
        # that queued meanwhile (or frees the wire).
        with self._lock:
            batch, self._queued = self._queued, []
        try:
            self._send(batch)
        finally:
            for sent in batch:
                sent.sent = True
                sent.wake.set()
            with self._lock:
                if self._queued:
                    self._queued[0].wake.set()
                else:
                    self._sending = False
        return call.outcome()

    def _send(self, batch: list[_Call]) -> None:
        wire = self._wire_connection
        try:
            # As redis-py's own commands: a lost connection is retried (with backoff) before the error is raised.
            replies = wire.retry.call_with_retry(lambda: self._exchange(batch), lambda _: wire.disconnect())
        except Exception as exc:  # the connection failed: no call of the batch knows whether it ran
            for call in batch:
                call.error = exc
            return
        for call, reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError):  # Redis restarted and lost its scripts: this call did not run
                try:
                    call.reply, call.error = call.script(keys=call.keys, args=call.args), None  # loads, then runs
                except Exception as exc:
                    call.error = exc
            elif isinstance(reply, Exception):
                call.error = reply
            else:
                call.reply, call.error = reply, None

    def _exchange(self, batch: list[_Call]) -> list[Any]:
        """Write every call of the batch at once, then read their replies (an error reply is the call's own)."""
        wire = self._wire_connection
        wire.send_packed_command(
            wire.pack_commands([("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args) for c in batch])
        )
        replies: list[Any] = []
        for _ in batch:
            try:
                replies.append(wire.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies
