"""The queue class of the worker's own queues: RQ's ``Queue``, with its started registry built once.

RQ's ``Worker.perform_job`` reads ``queue.started_job_registry`` as each job starts, and RQ builds a new registry
object on every read (resolving its serializer and its class); a registry holds nothing but its name, connection
and serializer, so one per queue serves every job.
"""

from __future__ import annotations

from functools import cached_property

from rq import Queue
from rq.registry import StartedJobRegistry


class TaskQueue(Queue):
    @cached_property
    def started_job_registry(self) -> StartedJobRegistry:
        registry: StartedJobRegistry = super().started_job_registry
        return registry
