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
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis
from rq.utils import utcformat

from producer.jobhash import QueuedJob
from task_processor import keys, scripts


class BatchWriter:
    """One registered script per client; ``write`` sends a batch of checked jobs in one round trip."""

    def __init__(self, connection: redis.Redis) -> None:
        self._script = scripts.register(connection, "enqueue")

    def write(self, jobs: Sequence[QueuedJob], stamp: datetime) -> set[str] | None:
        """The ids the batch deferred (a dependency had not finished), or None when an earlier (resent) call had
        already written it. Raises redis.ResponseError 'DUPLICATE <id>' or 'UNKNOWN_DEPENDENCY <id> <dependency>'
        when it wrote nothing for that reason."""
        queues: dict[str, int] = {}
        per_job: list[Any] = []
        for job in jobs:
            index = queues.setdefault(job.queue, len(queues) + 1)
            per_job.append(index)
            per_job += job.varying_fields()
        names = list(queues)
        written = [
            keys.QUEUES,
            *(keys.queue(q) for q in names),
            *(keys.scheduled(q) for q in names),
            *(keys.deferred(q) for q in names),
            *(keys.job(job.id) for job in jobs),
        ]
        args = [utcformat(stamp), len(names), *names, keys.JOB_PREFIX, int(stamp.timestamp()), *per_job]
        reply = self._script(keys=written, args=args)
        if not reply[0]:
            return None
        return {item.decode() if isinstance(item, bytes) else str(item) for item in reply[1:]}
