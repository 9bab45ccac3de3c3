"""At-least-once: find the jobs whose worker died and put them back at the front of their queues.

A running job's entry in RQ's started registry (``rq:wip:<q>``) carries an expiry that the worker's heartbeat
keeps pushing forward; when it lapses, the worker is gone (SIGKILL, OOM, a deleted Pod). Plain RQ moves such a
job to the failed registry on its next maintenance pass (every 10 minutes) and only retries it if the caller
asked for retries. Here it is requeued within seconds, whatever the caller asked, and counted: a job abandoned
more than TASK_MAX_ABANDONS times is a poison task and goes to the failed registry instead, saying so.

A job popped into ``<queue>:intermediate`` whose worker died before registering it is requeued the same way,
after a grace period long enough for any live worker to have registered it.

Every step that moves a job is one Lua script, so any number of reapers (idle workers, the autoscaler) can run
at once: exactly one of them wins each job.
"""

from __future__ import annotations

import time

import redis
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.serializers import Serializer

from task_processor import keys, scripts
from task_processor.errors import first_line
from task_processor.logs import get_logger
from task_processor.observe import text

ABANDONED_FIELD = "abandoned"
"""Field of the job hash counting how often the job's worker died under it."""

INTERMEDIATE_GRACE = 10.0
"""Seconds a popped job may sit in ``<queue>:intermediate`` unregistered before it counts as stranded."""

log = get_logger("task_processor.reaper")


def _member(raw: bytes) -> str | None:
    """A member written by RQ is UTF-8; anything else is foreign data to pass over."""
    try:
        return text(raw, "strict")
    except UnicodeDecodeError:
        return None


class Reaper:
    def __init__(
        self, connection: redis.Redis, queues: tuple[str, ...], serializer: Serializer, max_abandons: int
    ) -> None:
        self.connection = connection
        self.queues = queues
        self.serializer = serializer
        self.max_abandons = max_abandons
        self._requeue_abandoned = scripts.register(connection, "requeue_abandoned")
        self._requeue_stranded = scripts.register(connection, "requeue_stranded")
        self._set_aside = scripts.register(connection, "set_aside")
        # The keys RQ's worker writes with SADD/ZADD: foreign data there would stop it (register, start a job).
        self._typed_keys = {keys.WORKERS: b"set"}
        for name in queues:
            self._typed_keys |= {keys.workers_of(name): b"set", keys.started(name): b"zset"}

    def set_aside_foreign_data(self) -> None:
        """Move data of the wrong type out of the keys RQ's worker writes, keeping it for whoever put it there."""
        with self.connection.pipeline(transaction=False) as pipe:
            for key in self._typed_keys:
                pipe.type(key)
            types = pipe.execute()
        for (key, want), have in zip(self._typed_keys.items(), types, strict=True):
            if have in (b"none", want):
                continue
            moved_to = keys.foreign(key)
            if self._set_aside(keys=[key, moved_to], args=[have]):
                log.error(
                    "moved data RQ did not write out of one of its keys",
                    key=key,
                    type=have.decode(),
                    expected=want.decode(),
                    moved_to=moved_to,
                )

    def run(self) -> int:
        """One pass over every queue; returns how many jobs it put back."""
        self.set_aside_foreign_data()
        moved = 0
        for name in self.queues:
            try:
                moved += self._abandoned(name) + self._stranded(name)
            except redis.ResponseError as exc:  # foreign data under this queue's keys: the others go on
                log.error("cannot check a queue for abandoned jobs", queue=name, error=first_line(exc))
        self._forget_dead_workers()
        return moved

    def _abandoned(self, name: str) -> int:
        queue_key, wip = keys.queue(name), keys.started(name)
        moved = 0
        lapsed: list[bytes] = self.connection.zrangebyscore(wip, "-inf", f"({time.time()}")  # type: ignore[assignment]
        for raw in lapsed:
            member = _member(raw)
            if member is None:
                self.connection.zrem(wip, raw)  # not a job's entry at all
                continue
            job_id = member.split(":", 1)[0]
            count = self._requeue_abandoned(
                keys=[wip, queue_key, keys.job(job_id), keys.execution(member)],
                args=[member, job_id, self.max_abandons],
            )
            if count < 0:
                continue
            if count > self.max_abandons:
                self._fail(job_id, name, count)
            else:
                moved += 1
                log.warning("requeued a job whose worker died", job_id=job_id, queue=name, abandoned=count)
        return moved

    def _fail(self, job_id: str, name: str, count: int) -> None:
        job = Job.fetch(job_id, connection=self.connection, serializer=self.serializer)
        message = (
            f"AbandonedJobError: the worker running this job died {count} times (more than TASK_MAX_ABANDONS="
            f"{self.max_abandons}); not retried again: a task that kills its worker would take the fleet down"
        )
        with self.connection.pipeline() as pipeline:
            job.set_status(JobStatus.FAILED, pipeline=pipeline)
            job._handle_failure(message, pipeline, worker_name="")  # RQ's own failure bookkeeping
            pipeline.execute()
        Queue(name, connection=self.connection, serializer=self.serializer).enqueue_dependents(job)
        log.error("failed a job whose worker kept dying", job_id=job_id, queue=name, abandoned=count)

    def _stranded(self, name: str) -> int:
        queue_key, intermediate, seen_key = keys.queue(name), keys.intermediate(name), keys.intermediate_seen(name)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.lrange(intermediate, 0, -1)
            pipe.zrange(keys.started(name), 0, -1)
            pipe.hgetall(seen_key)
            ids, members, seen = pipe.execute()
        popped = {t for raw in ids if (t := _member(raw))}
        stranded = popped - {t.split(":", 1)[0] for m in members if (t := _member(m))}
        seen = {k.decode(): float(v) for k, v in seen.items()}
        now, moved = time.time(), 0
        with self.connection.pipeline(transaction=False) as pipe:
            for job_id in stranded - set(seen):
                pipe.hset(seen_key, job_id, now)
            for job_id in set(seen) - stranded:
                pipe.hdel(seen_key, job_id)
            pipe.execute()
        for job_id in (j for j in stranded if j in seen and now - seen[j] > INTERMEDIATE_GRACE):
            if self._requeue_stranded(keys=[intermediate, queue_key, seen_key], args=[job_id]):
                moved += 1
                log.warning("requeued a job popped by a worker that died before starting it", job_id=job_id)
        return moved

    def _forget_dead_workers(self) -> None:
        """Drop ``rq:workers`` entries whose hash expired (the worker stopped heartbeating), as RQ would lazily."""
        registered = list(self.connection.smembers(keys.WORKERS))
        if not registered:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            for key in registered:
                pipe.exists(key)
            alive = pipe.execute()
        dead = [key for key, exists in zip(registered, alive, strict=True) if not exists]
        if dead:
            self.connection.srem(keys.WORKERS, *dead)
