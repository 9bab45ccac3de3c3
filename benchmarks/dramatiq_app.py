"""Dramatiq with its Redis broker and default middleware."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks import tasks

dramatiq.set_broker(RedisBroker(url=os.environ["BENCH_REDIS_URL"]))

noop = dramatiq.actor(tasks.noop, actor_name="noop")
mark_done = dramatiq.actor(tasks.mark_done, actor_name="mark_done")
stamp = dramatiq.actor(tasks.stamp, actor_name="stamp")
