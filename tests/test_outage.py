"""A Redis outage at one exact moment of a worker's loop, in process: what a whole fleet under a random kill
(tests/test_faults_workers.py, tests/test_faults_redis.py) only hits now and then."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rq.worker import WorkerStatus

from producer import Producer
from producer.commands.redis_server import LocalRedisServer
from task_processor.connection import connect
from task_processor.settings import Settings
from tests.conftest import TASK_MODULES, wait_for
from worker.runner import build_worker


@pytest.fixture
def own_redis() -> Iterator[LocalRedisServer]:
    server = LocalRedisServer().start()
    yield server
    server.close()


@pytest.mark.timeout(60)
def test_redis_lost_as_a_worker_turns_idle_is_waited_out_not_fatal(own_redis: LocalRedisServer) -> None:
    """The worker has just ended a job (state busy) and Redis is gone when it goes back to waiting for work:
    it backs off and, once Redis is back, says idle and takes the next job, instead of quitting."""
    settings = Settings(redis_url=own_redis.url, abandon_after=3, task_modules=(TASK_MODULES,))
    worker = build_worker(settings, connect(own_redis.url), ("default",))
    worker.set_state(WorkerStatus.BUSY)
    own_redis.kill()

    outcome: dict[str, Any] = {}

    def wait_for_work() -> None:
        try:
            outcome["taken"] = worker.dequeue_job_and_maintain_ttl(1)
        except BaseException as exc:  # the assertion below names it
            outcome["error"] = exc

    waiting = threading.Thread(target=wait_for_work, daemon=True)
    waiting.start()
    wait_for(lambda: worker.outage.lost or "error" in outcome, timeout=15, what="the worker to notice the outage")
    assert "error" not in outcome, f"the worker gave up on a lost Redis: {outcome['error']!r}"

    own_redis.start()
    conn = redis.Redis.from_url(own_redis.url)
    wait_for(lambda: conn.hget(worker.key, "state") == b"idle", timeout=30, what="the worker to say idle again")
    job = Producer(own_redis.url).enqueue("worker.examples.add", 1, 2)
    waiting.join(timeout=40)
    assert not waiting.is_alive(), "the worker did not come back to work after the outage"
    assert "error" not in outcome, f"the worker gave up on a lost Redis: {outcome['error']!r}"
    taken, _ = outcome["taken"]
    assert taken.id == job.id
