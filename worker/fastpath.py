"""The success path's bookkeeping, each step one Lua call that writes exactly what RQ's own methods write.

redis-py spends more Python per command it packs and parses than Redis spends running it, and each round trip
costs a pair of context switches; RQ's SimpleWorker sends about 40 commands in 14 round trips per successful
job. Here a job in a busy queue costs one call: the finish of the job before it, which also pops it and starts
it (a pop of its own when there was none). The start stays a call of its own only for a job the pop could not
start: one whose meta holds more than our attempt count, or whose serializer is not JSON. Each line of the
scripts names the RQ method whose write it reproduces, so that RQ's tools and rq-dashboard cannot tell the
difference (``tests/test_fastpath.py`` compares what a job leaves in Redis with what RQ's ``SimpleWorker``
leaves).

The finish also queues the job's dependents whose dependencies are now met, as RQ's ``Queue.enqueue_dependents``
does, in the same atomic step: a worker that dies right after it cannot leave them deferred. One difference from
RQ, on purpose: a job that returned None and has no earlier results gets no result stream (RQ reads a job without
one as a None result; the stream would take most of a finished no-op job's memory).

Only the common case takes this path: a result kept for a positive time and no repeats. Anything else (failure,
retry, stop, ``result_ttl`` 0 or -1, repeats) goes through RQ's own code.
"""

from __future__ import annotations

import enum
import threading
import time
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import uuid4

import redis
from redis.exceptions import NoScriptError
from rq.defaults import UNSERIALIZABLE_RETURN_VALUE_PAYLOAD
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.results import Result
from rq.utils import current_timestamp, now

from task_processor import keys, scripts
from task_processor.errors import first_line
from task_processor.jobs import parse_time, rq_time
from task_processor.logs import get_logger
from worker.batching import BatchedCalls, Call
from worker.wake import Waker

log = get_logger("task_processor.worker")


class Suspended(enum.Enum):
    """What a pop returns instead of a job while `rq suspend` is in force."""

    SUSPENDED = "suspended"


SUSPENDED = Suspended.SUSPENDED

FINISH_KEYS = 9
"""The keys of lua/finish.lua before those of the pop it may make."""

END_PATIENCE = 0.5
"""Share of TASK_ABANDON_AFTER for which a job's end keeps trying to reach Redis (a restart, a failover) before the
worker leaves the job to the reaper. The job's started entry lapses no sooner than two thirds of it after the failure
(a heartbeat comes every third), so within this share no other worker can have been handed the job."""

END_RETRY_PAUSE = 0.5
"""Seconds between two tries of a job's end while Redis is away."""
_SUSPENDED_REPLY = SUSPENDED.value.encode()


@dataclass(frozen=True, slots=True)
class Popped:
    """A job a pop moved into its queue's intermediate list, and started when ``execution`` is set."""

    queue_key: str
    job_id: bytes
    fields: list[bytes] | None
    """The job's hash as a flat list (after the start, when the pop started it), None when its key is no hash."""
    execution: Execution | None


PopResult = tuple[Popped, ...] | Literal[Suspended.SUSPENDED] | None
"""The jobs taken (one or more, in queue order), SUSPENDED, or None when every queue was empty."""


@dataclass(frozen=True, slots=True)
class Finished:
    """What a finish returns: the dependents it queued, and the next job when it popped one."""

    queued_dependents: list[bytes]
    popped: PopResult


@dataclass(frozen=True, slots=True)
class Posted:
    """A finish sent without waiting for its reply (the worker had its next job in hand); ``call`` gets the reply
    when the connection's next exchange reads it."""

    job_id: str
    call: Call
    popped: Callable[[], PopResult] | None = None
    """For a finish that also popped the jobs after the next one: those jobs, once the reply is read."""
    again: Callable[[], Posted] | None = None
    """Posts the same finish once more (lua/finish.lua records a finish sent twice once)."""
    until: float = 0.0
    """Until when (``time.monotonic``) a finish that could not reach Redis is posted again (END_PATIENCE)."""


@dataclass(frozen=True, slots=True)
class _Start:
    """A start's execution id and time, and its arguments to the scripts (lua/lib/start.lua), chosen before the
    job is known; ``started`` None when the script takes the time as it runs (a pop sent ahead of a wait)."""

    execution_id: str
    started: datetime | None
    args: list[Any]


def can_finish_fast(job: Job, result_ttl: int) -> bool:
    """Whether the job's success is the common case the finish script writes."""
    return result_ttl > 0 and not job.repeats_left


class FastPath:
    """The pop, start and finish scripts of one worker, registered once. Keys come from RQ's own key templates
    (building RQ's registry objects per job costs more than the rest of the Python side of a job).

    It writes the worker's hash in Redis as RQ does; the worker applies the same state to its Python side."""

    def __init__(
        self,
        connection: redis.Redis,
        calls: BatchedCalls,
        worker_key: str,
        worker_name: str,
        ttl: int,
        starts_on_pop: bool,
    ) -> None:
        self.connection = connection
        self.calls = calls
        self.worker_key, self.worker_name, self.ttl = worker_key, worker_name, ttl
        self._pop = scripts.register(connection, "pop")
        self._start = scripts.register(connection, "start")
        self._finish = scripts.register(connection, "finish")
        self.waker = Waker(connection)
        # The pop's start writes the attempt count into meta as JSON; with another serializer Python starts jobs.
        self.starts_on_pop = starts_on_pop

    def pop(self, pop_keys: list[str], k: int) -> PopResult:
        """Up to ``k`` next jobs of the queues in ``pop_keys`` (lua/lib/pop.lua), SUSPENDED, or None when they are
        empty."""
        start = self._start_args() if self.starts_on_pop else None
        args = [keys.JOB_PREFIX, k, *self._start_part(start)]
        # Sent again (its reply lost with the connection), the pop hands over what its first send took, if it ran.
        reply = self.calls.call(self._pop, pop_keys, args, [*args, 1])
        return self._popped(reply, start)

    def wait_then_pop(self, pop_keys: list[str], k: int, wait_key: str, wait: float) -> PopResult:
        """``pop``, once ``wait_key`` holds a job or ``wait`` seconds passed, with no round trip in between.

        The blocking command moves the list's last item back onto its end (BLMOVE with the list as its own
        destination: nothing changes, but it returns only once the list holds something); the pop goes out in the
        same write, so Redis runs it as soon as the blocking command returns. Several idle workers on one queue
        all wake for a new job: one gets it, the others' pops find nothing and they block again.

        Both go out on a connection of the worker's own (``worker.wake``), written and read directly: what a
        redis-py pipeline does around its replies is most of the Python between an idle worker's wake and its
        job's start."""
        start = self._start_args(at_run=True) if self.starts_on_pop else None
        args = [keys.JOB_PREFIX, k, *self._start_part(start)]
        # Sent again (its reply lost with the connection), the pop hands over what its first send took, if it ran.
        reply = self.waker.wait_then_call(wait_key, wait, self._pop.sha, pop_keys, args, [*args, 1])
        if isinstance(reply, NoScriptError):  # Redis lost its scripts (a restart): the pop did not run
            return self.pop(pop_keys, k)  # loads the script as it runs
        return self._popped(reply, start)

    def start(self, job: Job, intermediate_key: str) -> Execution:
        """Mark the job started by this worker; returns its execution (RQ's prepare_execution and
        prepare_job_execution, with the same state on the job object)."""
        start = self._start_args()
        assert start.started is not None  # chosen here
        execution = self._started(start, job.id, start.execution_id, None)
        job.last_heartbeat = job.started_at = start.started
        job.worker_name = self.worker_name
        job._status = JobStatus.STARTED
        self.calls.call(
            self._start,
            [job.key, keys.started(job.origin), intermediate_key],
            [job.id, job.serializer.dumps(job.meta), *start.args],
        )
        return execution

    def finish(
        self, job: Job, execution: Execution, result_ttl: int, pop_keys: list[str], k: int, next_id: str | None
    ) -> Finished | Posted:
        """Record the job's success (RQ's handle_job_success), queue its dependents whose dependencies are now met
        (RQ's Queue.enqueue_dependents) and, with ``pop_keys``, pop up to ``k`` next jobs (and start them, as a pop
        does): lua/finish.lua. With ``next_id``, the job the worker runs next (an earlier pop took it), the finish
        names it the worker's current job and is only posted: the worker runs that job while Redis records this
        one, and reads the outcome later (``Posted``); with ``pop_keys`` too, it pops the jobs after that one, which
        the worker takes from ``Posted.popped`` once the reply is read."""
        assert job.started_at is not None
        assert job.ended_at is not None
        job._status = JobStatus.FINISHED
        fields = success_fields(job, self.worker_name, execution)
        start = self._start_args() if pop_keys and self.starts_on_pop else None
        finish_keys = [
            job.key,
            self.worker_key,
            keys.started(job.origin),
            execution.key,
            keys.executions(job.id),
            keys.results(job.id),
            keys.finished(job.origin),
            job.dependents_key,
            keys.QUEUES,
            *pop_keys,
        ]
        args = [job.id, execution.id, (job.ended_at - job.started_at).total_seconds(), rq_time(job.ended_at),
                result_ttl, current_timestamp() + result_ttl, keys.JOB_PREFIX,
                rq_time(now()), Queue.DEFAULT_TIMEOUT, keys.QUEUE_PREFIX, keys.deferred(""),
                1 if job._result is None else 0, k, next_id or "", *self._start_part(start), *fields]  # fmt: skip
        if next_id is not None:
            return self._post(job.id, finish_keys, args, start, time.monotonic() + self.ttl * END_PATIENCE)
        queued, popped = self.calls.call(self._finish, finish_keys, args)
        return Finished(queued, self._popped(popped, start))

    def _post(self, job_id: str, finish_keys: list[Any], args: list[Any], start: _Start | None, until: float) -> Posted:
        pops = len(finish_keys) > FINISH_KEYS
        # A finish that pops goes out at once (with any lingering ones): its jobs are wanted soon.
        call = self.calls.post(self._finish, finish_keys, args, linger=not pops)
        return Posted(
            job_id,
            call,
            (lambda: self._popped(call.reply[1], start)) if pops else None,
            again=lambda: self._post(job_id, finish_keys, args, start, until),
            until=until,
        )

    def _start_args(self, at_run: bool = False) -> _Start:
        """A start's arguments; with ``at_run``, for a call sent ahead of the moment it runs (behind a blocking
        wait of up to a second): the script takes its times from Redis's clock as it runs, so that a job is never
        marked started before it was popped (or enqueued), and the worker reads them from the job it gets."""
        ttl = self.ttl
        execution_id, started, timestamp = uuid4().hex, now(), current_timestamp()
        args = [self.worker_key, self.worker_name, execution_id, started.timestamp(), rq_time(started), ttl,
                timestamp + ttl, timestamp + ttl + 60, "1" if at_run else ""]  # fmt: skip
        return _Start(execution_id, None if at_run else started, args)

    @staticmethod
    def _start_part(start: _Start | None) -> list[Any]:
        return [len(start.args), *start.args] if start else [0]

    def _started(self, start: _Start, job_id: str, execution_id: str, fields: list[bytes] | None) -> Execution:
        """The execution a start wrote, on the Python side (its time from the job's ``fields`` when the script took
        it)."""
        execution = Execution(id=execution_id, job_id=job_id, connection=self.connection, worker_name=self.worker_name)
        started = start.started
        if started is None:
            assert fields is not None  # a job the pop started is a hash
            started = parse_time(fields[2 * fields[::2].index(b"started_at") + 1].decode())
        execution.created_at = execution.last_heartbeat = started
        return execution

    def _popped(self, reply: Any, start: _Start | None) -> PopResult:
        if not reply:
            return None
        if reply == _SUSPENDED_REPLY:
            return SUSPENDED
        queue_key, hits = reply[0].decode(), reply[1]
        return tuple(
            Popped(queue_key, job_id, fields or None,
                   self._started(start, job_id.decode(), execution_id.decode(), fields) if started and start else None)
            for job_id, fields, started, execution_id in hits
        )  # fmt: skip


def success_fields(job: Job, worker_name: str, execution: Execution) -> list[Any]:
    """The fields of the job's success entry in its result stream, flat: what RQ's
    ``Result(type=SUCCESSFUL, ...).serialize()`` writes, without building a ``Result`` (whose serializer lookup
    costs a no-op task several percent). ``tests/test_rq_contract.py`` holds the two equal."""
    fields: list[Any] = ["type", Result.Type.SUCCESSFUL.value, "worker_name", worker_name]
    value = job._result
    if value is not None:
        try:
            serialized = job.serializer.dumps(value)
        except Exception:
            serialized = job.serializer.dumps(UNSERIALIZABLE_RETURN_VALUE_PAYLOAD)
        fields += ["return_value", b64encode(serialized).decode()]
    fields += ["execution_id", execution.id, "execution_started_at", execution.created_at.timestamp()]
    assert job.ended_at is not None
    return [*fields, "execution_ended_at", job.ended_at.timestamp()]


class PostedFinishes:
    """A worker's posted finishes until their replies are read. One that could not reach Redis is posted again (a
    finish sent twice records once) while its END_PATIENCE lasts. One that failed past it, or on an error reply, may
    not have been recorded: the job then stays started, and the reaper runs it again once its heartbeat lapses (so
    do the jobs it may have popped); the worker says so in the log. The jobs a posted finish popped go
    to ``hold`` as its reply is read. The worker's thread and its heartbeat thread both read replies."""

    def __init__(self, calls: BatchedCalls, hold: Callable[[PopResult], None]) -> None:
        self.calls = calls
        self.hold = hold
        self._posted: list[Posted] = []
        self._lock = threading.Lock()

    def add(self, posted: Posted) -> None:
        with self._lock:
            self._posted.append(posted)

    @property
    def popping(self) -> bool:
        """Whether a posted finish pops jobs whose reply is not read yet."""
        return any(posted.popped is not None for posted in self._posted)

    def check(self) -> bool:
        """Look at the replies read so far; whether a finish that could not reach Redis was posted again."""
        if not self._posted:
            return False
        with self._lock:
            return self._check()

    def _check(self) -> bool:
        pending: list[Posted] = []
        again = False
        for posted in self._posted:
            if not posted.call.done:
                pending.append(posted)
            elif self._post_again(posted, pending):
                again = True
            elif posted.call.error is not None:
                log.warning(
                    "the end of a job may not be recorded; if it was not, the reaper will run the job again",
                    job_id=posted.job_id,
                    error=first_line(posted.call.error),
                )
            elif posted.popped is not None:
                self.hold(posted.popped())
        self._posted = pending
        return again

    @staticmethod
    def _post_again(posted: Posted, pending: list[Posted]) -> bool:
        """Post a finish that could not reach Redis again, while its END_PATIENCE lasts (onto ``pending``)."""
        error = posted.call.error
        if not isinstance(error, redis.ConnectionError) or posted.again is None or time.monotonic() > posted.until:
            return False
        try:
            pending.append(posted.again())
        except redis.ConnectionError:
            pending.append(posted)  # still away: posted again at the next look
        return True

    def settle(self) -> None:
        """Read every reply still owed, and look at them; a finish posted again because it could not reach Redis is
        read too, a pause apart, until Redis records it or its END_PATIENCE is over."""
        while self._posted:
            self.calls.settle()
            if not self.check():
                return
            time.sleep(END_RETRY_PAUSE)
