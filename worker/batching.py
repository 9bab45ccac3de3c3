"""The Lua calls of a process's task slots, sent to Redis together.

With ``--concurrency N``, N slots start and finish jobs at the same time. A round trip of its own for each call
would cost a slot more than a short task does: redis-py spends more Python on one call than on one more command
in a pipeline, and each round trip costs a pair of context switches. So a slot that finds another slot's batch
on the wire queues its call; the next slot to take the wire sends every queued call in one pipeline, and each
slot gets its own reply or error (flat combining: no thread of its own, and no wait when only one slot calls).
The calls of a batch are independent scripts, not a transaction, exactly as if each slot had sent its own.

A call may also be posted: its reply is read by the connection's next exchange (replies come back in the order the
calls went out). A worker that has its next job in hand posts the finish of the one it ran and runs the next while
Redis records it, instead of waiting a round trip between the two. A posted call may linger: it goes out with the
next call sent, or after ``LINGER`` seconds at the latest (a thread of the connection sends it then), so that the
finishes of a run of short jobs share one write and one read.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from task_processor.packing import Packer, read_reply

LINGER = 0.002
"""Seconds a lingering call may wait for company before it is sent on its own."""

LINGER_MOST = 16
"""Lingering calls that make a batch worth sending at once."""


class Call:
    """One script call; its reply (or error) once ``done``."""

    __slots__ = ("again", "args", "done", "error", "keys", "lingers", "posted", "reply", "script", "sent", "wake")

    def __init__(
        self,
        script: Script | None,
        keys: Sequence[Any],
        args: Sequence[Any],
        posted: bool = False,
        lingers: bool = False,
        again: Sequence[Any] | None = None,
    ) -> None:
        self.script, self.keys, self.args = script, keys, args
        self.again = again  # its arguments when the batch is sent again after a lost connection (it may have run)
        self.posted = posted  # its reply is read by a later exchange
        self.lingers = lingers  # queued without a thread waiting on it: a later call, or the flusher, sends it
        self.reply: Any = None
        self.error: BaseException | None = redis.ConnectionError("the batch carrying this call was interrupted")
        self.sent = False
        self.done = False  # its reply (or the failure that lost it) is known
        # Set when the call was sent, or when its thread is to send the next batch; none for a lingering call, which
        # no thread waits on.
        self.wake = None if lingers else threading.Event()

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
        self._packer = Packer(self._wire_connection)
        self._queued: list[Call] = []
        self._unread: list[Call] = []  # posted calls whose replies the next exchange reads first
        self._sending = False  # a thread is sending a batch; calls made meanwhile wait in _queued
        self._lock = threading.Lock()
        self._lingering = threading.Event()  # set when a call lingers: the flusher sends it within LINGER
        self._flusher: threading.Thread | None = None

    def call(self, script: Script, keys: Sequence[Any], args: Sequence[Any], again: Sequence[Any] | None = None) -> Any:
        """Run ``script`` and return its reply (or raise its error), as ``script(keys, args)`` would; sent again
        after a lost connection, with ``again`` for its arguments when given."""
        return self._run(Call(script, keys, args, again=again)).outcome()

    def post(self, script: Script, keys: Sequence[Any], args: Sequence[Any], linger: bool = False) -> Call:
        """Send ``script`` and return at once: the call is ``done`` once a later exchange (``call``, ``post``,
        ``settle``) read its reply. With ``linger``, it goes out with the next call sent, or within ``LINGER``
        seconds. Raises when it could not be sent."""
        if linger:
            call = Call(script, keys, args, posted=True, lingers=True)
            with self._lock:
                if len(self._queued) < LINGER_MOST - 1:
                    self._queued.append(call)
                    if self._flusher is None:
                        self._flusher = threading.Thread(target=self._flush, name="redis-linger", daemon=True)
                        self._flusher.start()
                    self._lingering.set()
                    return call
            call.lingers, call.wake = False, threading.Event()
        else:
            call = Call(script, keys, args, posted=True)
        self._run(call)
        if call.done:  # it failed to go out
            call.outcome()
        return call

    def _flush(self) -> None:
        """The flusher's loop: lingering calls go out within LINGER of the first of them."""
        while True:
            self._lingering.wait()
            time.sleep(LINGER)
            self._lingering.clear()
            with contextlib.suppress(Exception):  # the calls carry their own errors; the flusher must live on
                self.settle()

    def settle(self) -> None:
        """Read the replies of every call posted so far."""
        self._run(Call(None, (), ()))  # no script: nothing to write, only the replies owed to read

    def _run(self, call: Call) -> Call:
        """Send ``call`` with whatever else is queued."""
        with self._lock:
            self._queued.append(call)
            leads, self._sending = not self._sending, True
        if not leads:
            assert call.wake is not None  # lingering calls never come here
            call.wake.wait()
            if call.sent:
                return call
        # This thread sends everything queued, its own call included, then passes the lead to the first call
        # that queued meanwhile (or frees the wire).
        with self._lock:
            batch, self._queued = self._queued, []
        try:
            self._send(batch)
        finally:
            for sent in batch:
                sent.sent = True
                if sent.wake is not None:
                    sent.wake.set()
            with self._lock:
                # The lead passes to a thread waiting on its call; lingering calls wait for the next lead.
                waiting = next((queued for queued in self._queued if not queued.lingers), None)
                if waiting is not None:
                    assert waiting.wake is not None  # a call that does not linger has its event
                    waiting.wake.set()
                else:
                    self._sending = False
        return call

    def _send(self, batch: list[Call]) -> None:
        wire = self._wire_connection
        try:
            # As redis-py's own commands: a lost connection is retried (with backoff) before the error is raised.
            wire.retry.call_with_retry(lambda: self._exchange(batch), self._lost)
        except Exception as exc:  # the connection failed: no call of the batch knows whether it ran
            for call in batch:
                call.error, call.done = exc, True

    def _lost(self, exc: Exception) -> None:
        """Drop a failed connection. The posted calls whose replies it owes fail with it: those replies never come on
        the next connection, where reading one for them would take another call's reply."""
        self._wire_connection.disconnect()
        unread, self._unread = self._unread, []
        for call in unread:
            call.error, call.done = exc, True

    def _exchange(self, batch: list[Call]) -> None:
        """Write every call of the batch at once, then read the replies still owed to posted calls, then those of
        the batch's calls that wait for theirs (an error reply is the call's own)."""
        wire = self._wire_connection
        # settle() sends a call without a script: nothing is written for it
        commands = [("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args) for c in batch if c.script is not None]
        for call in batch:  # from now on the batch goes out again only after a lost connection
            call.args = call.again if call.again is not None else call.args
        if commands:
            # Connected as a pool connects what it hands out: a Sentinel's connection asks for the master there (a
            # write to an unconnected one would go to its default address, localhost:6379).
            wire.connect()
            wire.send_packed_command(self._packer.pack(commands))
        owed, self._unread = self._unread, []
        try:
            for call in owed:
                self._deliver(call, self._read())
        except Exception as exc:  # the connection broke: a posted call not read may or may not have run
            for call in owed:
                if not call.done:
                    call.error, call.done = exc, True
            raise
        # Replies come in the batch's order: a posted call before one that waits is read now, the rest later.
        waits = [i for i, call in enumerate(batch) if call.script is not None and not call.posted]
        read_now = waits[-1] + 1 if waits else 0
        for i, call in enumerate(batch):
            if call.script is None:
                call.error, call.done = None, True
            elif i < read_now:
                self._deliver(call, self._read())
            else:
                self._unread.append(call)

    def _read(self) -> Any:
        return read_reply(self._wire_connection)

    @staticmethod
    def _deliver(call: Call, reply: Any) -> None:
        if isinstance(reply, NoScriptError):  # Redis restarted and lost its scripts: this call did not run
            assert call.script is not None
            try:
                call.reply, call.error = call.script(keys=call.keys, args=call.args), None  # loads, then runs
            except Exception as exc:
                call.error = exc
        elif isinstance(reply, Exception):
            call.error = reply
        else:
            call.reply, call.error = reply, None
        call.done = True
