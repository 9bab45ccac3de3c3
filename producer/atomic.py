"""Write a batch of queued jobs as one Lua script: all of them or none, and at most once.

The script writes what RQ's enqueue writes for each job of the batch (``producer.jobhash``): the queue's name
into the ``rq:queues`` set, the job's hash, and its id onto the queue's list (the tail, or the head for
``at_front``), or into the queue's scheduled or deferred registry for a job with a schedule or unfinished
dependencies. It takes only what varies per job; the fields every queued job shares are part of the script, so
a call carries a few arguments per job instead of a ~16-field HSET.

MULTI/EXEC does not roll back: when one command fails (a queue key holding foreign data), the others still
apply, leaving a task queued on one queue and an orphaned job hash for the other. The script first checks that
every key it will write holds the type RQ keeps there (or nothing), and writes only then.

redis-py resends a command whose connection broke before the reply came (a Redis restart). The script's
receipt makes that resend harmless: when the batch's first job hash already carries this batch's
``created_at``, the batch was applied and the script writes nothing again.

A single job without options (``enqueue``'s common case) goes to ``enqueue_one.lua`` instead, which writes the
same with the same guarantees in four Redis calls instead of seven: it learns each key's type from the write
that needs it, in an order that leaves nothing written when one refuses (and takes the push back when the
``rq:queues`` set refuses). Both scripts go out on the writer's one connection.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from producer.jobhash import QueuedJob
from producer.options import PLAIN
from task_processor import keys, scripts
from task_processor.connection import Client, name_error
from task_processor.jobs import rq_time
from task_processor.packing import Packer, read_reply

REPLICA_ACKS_TIMEOUT = 1.0
"""Seconds an enqueue waits for TASK_REPLICA_ACKS replicas to acknowledge its write (Redis WAIT) before it raises:
a healthy replica acknowledges within a round trip, so this is only spent while replicas are away or resyncing."""


class TooFewReplicasError(redis.RedisError):
    """WAIT heard from fewer replicas than asked before its time-out. ``refusal``: the script's error reply, when it
    refused the call (the caller decides whether that refusal wrote anything a WAIT was needed for)."""

    def __init__(self, acked: int, wanted: int, timeout: float, refusal: redis.ResponseError | None = None) -> None:
        super().__init__(f"{acked} of {wanted} replicas acknowledged the write within {timeout:g}s")
        self.acked, self.wanted, self.timeout, self.refusal = acked, wanted, timeout, refusal


class DirectScript:
    """``script(keys=..., args=...)`` as redis-py runs it, for any of a writer's scripts, sent on one connection of
    the writer's own.

    redis-py's per-call path (pool checkout and release, command lookup, argument checks, metrics) costs about
    as much Python as the rest of an enqueue. So the EVALSHA is written and read directly on one connection
    (worker/batching.py does the same), with what that path gives: a dropped connection is retried with the
    connection's own Retry (disconnecting first), a NOSCRIPT loads the script and runs it again (on the same
    connection), and an error reply names the command as ``task_processor.connection.Client`` does. A call made
    while another thread is on that connection, and any client this cannot stand in for exactly (a
    single-connection client, client-side caching, a subclass with its own ``execute_command``, a response callback
    for EVALSHA), goes through redis-py as before. The connection is made again in a forked child, as redis-py's
    pool does.

    With ``replica_acks`` N > 0, a WAIT for N replicas follows the EVALSHA on the same connection, in the same
    write (WAIT covers the writes of its own connection), and a call that hears from fewer raises
    TooFewReplicasError, whatever the script answered. On a Sentinel's client the connection finds the master when it
    connects, and a demoted master's READONLY drops it, so the retry goes to the new master."""

    def __init__(
        self,
        connection: redis.Redis,
        replica_acks: int = 0,
        acks_timeout: float = REPLICA_ACKS_TIMEOUT,
    ) -> None:
        self._client = connection
        self._lock = threading.Lock()
        self._wire: redis.Connection | None = None
        self._pid = 0
        self._pool: redis.ConnectionPool | None = None
        self._packer: Packer | None = None
        self._acks_timeout = acks_timeout
        self._wait = ("WAIT", replica_acks, max(1, round(acks_timeout * 1000))) if replica_acks > 0 else None
        execute = getattr(type(connection), "execute_command", None)
        self._name_errors = execute is Client.execute_command
        pool = getattr(connection, "connection_pool", None)
        if (
            isinstance(connection, redis.Redis)
            and (execute is redis.Redis.execute_command or self._name_errors)
            and type(connection).evalsha is redis.Redis.evalsha
            and connection.connection is None
            and isinstance(pool, redis.ConnectionPool)
            and getattr(pool, "cache", None) is None
        ):
            self._pool = pool

    def __call__(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        if self._pool is None or "EVALSHA" in self._client.response_callbacks or not self._lock.acquire(blocking=False):
            return self._through_client(script, keys, args)
        try:
            return self._call(script, keys, args)
        finally:
            self._lock.release()

    def _through_client(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """redis-py's own path; with a WAIT, both commands in one pipeline, which runs them on one connection."""
        if self._wait is None:
            return script(keys=keys, args=args)
        with self._client.pipeline(transaction=False) as pipe:
            script(keys=keys, args=args, client=pipe)
            pipe.execute_command(*self._wait)
            reply, acked = pipe.execute(raise_on_error=False)
            if isinstance(reply, redis.ResponseError):  # named as the pipeline names the error it raises
                pipe.annotate_exception(reply, 1, ("EVALSHA", script.sha))
        return self._outcome(reply, acked)

    def _outcome(self, reply: Any, acked: Any) -> Any:
        """The script's reply, or its error; TooFewReplicasError first when the WAIT fell short."""
        if self._wait is not None and int(acked) < self._wait[1]:
            refusal = reply if isinstance(reply, redis.ResponseError) else None
            raise TooFewReplicasError(int(acked), self._wait[1], self._acks_timeout, refusal)
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def _call(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        pool, wire, pid = self._pool, self._wire, os.getpid()
        assert pool is not None
        if wire is None or self._pid != pid:
            wire = self._wire = cast(redis.Connection, pool.make_connection())
            self._pid = pid
            self._packer = Packer(wire)
        # Readied as the pool readies a connection it hands out: connected (the connection retries that itself),
        # and reconnected once when the server closed it or it holds unread data.
        wire.connect()
        try:
            if wire.can_read() and not self._notified(pool):
                raise redis.ConnectionError("Connection has data")
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            wire.disconnect()
            wire.connect()
            if wire.can_read() and not self._notified(pool):
                raise redis.ConnectionError("Connection not ready") from exc
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args), *([self._wait] if self._wait else [])]
        assert self._packer is not None  # made with the connection
        packed = self._packer.pack(commands)

        def exchange() -> tuple[Any, Any]:
            wire.send_packed_command(packed)
            reply = read_reply(wire)  # an error reply too: the WAIT's reply comes next
            return reply, (wire.read_response() if self._wait else None)

        try:
            reply, acked = wire.retry.call_with_retry(exchange, lambda _: wire.disconnect())
            if isinstance(reply, NoScriptError):  # Redis lost its scripts (a restart, a failover): load, run again
                wire.send_command("SCRIPT", "LOAD", script.script)
                wire.read_response()
                reply, acked = wire.retry.call_with_retry(exchange, lambda _: wire.disconnect())
        except BaseException:
            wire.disconnect()  # whatever was half sent or half read must not reach the next call
            raise
        if getattr(wire, "should_reconnect", bool)():  # (redis-py 8) the server announced a maintenance
            wire.disconnect()
        if isinstance(reply, redis.ResponseError) and self._name_errors:
            name_error(reply, ("EVALSHA", script.sha))
        return self._outcome(reply, acked)

    @staticmethod
    def _notified(pool: redis.ConnectionPool) -> bool:
        """Whether the pool takes maintenance notifications (redis-py 8), which a readable connection may hold."""
        enabled = getattr(pool, "maint_notifications_enabled", None)
        return bool(enabled and enabled())


class BatchWriter:
    """One registered script per client; ``write`` sends a batch of checked jobs in one round trip."""

    def __init__(
        self, connection: redis.Redis, replica_acks: int = 0, acks_timeout: float = REPLICA_ACKS_TIMEOUT
    ) -> None:
        self._call = DirectScript(connection, replica_acks, acks_timeout)
        self._enqueue = scripts.register(connection, "enqueue")
        self._enqueue_one = scripts.register(connection, "enqueue_one")
        self._queue_keys: dict[str, tuple[str, str, str]] = {}

    def _keys_of(self, queue: str) -> tuple[str, str, str]:
        """The queue's list, scheduled and deferred registry."""
        found = self._queue_keys.get(queue)
        if found is None:
            if len(self._queue_keys) >= 1024:
                self._queue_keys.clear()
            found = self._queue_keys[queue] = (keys.queue(queue), keys.scheduled(queue), keys.deferred(queue))
        return found

    def write(self, jobs: Sequence[QueuedJob], stamp: datetime) -> set[str] | None:
        """The ids the batch deferred (a dependency had not finished), or None when an earlier (resent) call had
        already written it. Raises redis.ResponseError 'DUPLICATE <id>' or 'UNKNOWN_DEPENDENCY <id> <dependency>'
        when it wrote nothing for that reason."""
        if len(jobs) == 1 and jobs[0].options is PLAIN:  # enqueue's common case: enqueue_one.lua
            job = jobs[0]
            written = [keys.QUEUES, self._keys_of(job.queue)[0], keys.JOB_PREFIX + job.id]
            reply = self._call(self._enqueue_one, written, [rq_time(stamp), job.queue, *job.call_fields()])
            return set() if reply[0] else None
        if len(jobs) == 1:  # without the loops
            job = jobs[0]
            written = [keys.QUEUES, *self._keys_of(job.queue), keys.JOB_PREFIX + job.id]
            args = [rq_time(stamp), 1, job.queue, keys.JOB_PREFIX, int(stamp.timestamp()), 1, *job.varying_fields()]
        else:
            queues: dict[str, int] = {}
            per_job: list[Any] = []
            for job in jobs:
                index = queues.setdefault(job.queue, len(queues) + 1)
                per_job.append(index)
                per_job += job.varying_fields()
            names = list(queues)
            of_queues = [self._keys_of(q) for q in names]
            written = [
                keys.QUEUES,
                *(k[0] for k in of_queues),
                *(k[1] for k in of_queues),
                *(k[2] for k in of_queues),
                *(keys.JOB_PREFIX + job.id for job in jobs),
            ]
            args = [rq_time(stamp), len(names), *names, keys.JOB_PREFIX, int(stamp.timestamp()), *per_job]
        reply = self._call(self._enqueue, written, args)
        if not reply[0]:
            return None
        if len(reply) == 1:
            return set()
        return {item.decode() if isinstance(item, bytes) else str(item) for item in reply[1:]}
