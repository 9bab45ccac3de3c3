"""Write a batch of queued jobs as one Lua script: all of them or none, and at most once.

The script writes what RQ's ``Queue.enqueue_many`` writes for each job of the batch (``producer.jobhash``): the
queue's name into the ``rq:queues`` set, the job's hash, and its id onto the queue's list (the tail, or the
head for ``at_front``). It takes only what varies per job; the fields every queued job shares are part of the
script, so a call carries a few arguments per job instead of a ~16-field HSET.

MULTI/EXEC does not roll back: when one command fails (a queue key holding foreign data), the others still
apply, leaving a task queued on one queue and an orphaned job hash for the other. The script first checks that
every key it will write holds the type RQ keeps there (or nothing), and writes only then.

redis-py resends a command whose connection broke before the reply came (a Redis restart). The script's
receipt makes that resend harmless: when the batch's first job hash already carries this batch's
``created_at``, the batch was applied and the script writes nothing again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import redis
from rq.utils import utcformat

from producer.jobhash import QueuedJob
from task_processor import keys, scripts

PER_JOB = 8
"""Script arguments per job: its queue's index, then ``QueuedJob.varying_fields``."""


class BatchWriter:
    """One registered script per client; ``write`` sends a batch of checked jobs in one round trip."""

    def __init__(self, connection: redis.Redis) -> None:
        self._script = scripts.register(connection, "enqueue")

    def write(self, jobs: Sequence[QueuedJob], stamp: datetime) -> bool:
        """True when this call wrote the batch, False when an earlier (resent) call already had."""
        queues: dict[str, int] = {}
        per_job: list[str | int] = []
        for job in jobs:
            index = queues.setdefault(job.queue, len(queues) + 1)
            per_job.append(index)
            per_job += job.varying_fields()
        written = [keys.QUEUES, *(keys.queue(q) for q in queues), *(keys.job(job.id) for job in jobs)]
        return bool(self._script(keys=written, args=[utcformat(stamp), len(queues), *queues, PER_JOB, *per_job]))
