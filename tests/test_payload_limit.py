"""TASK_MAX_PAYLOAD: arguments over the limit are refused at enqueue, naming the size, the limit and the largest
argument, with nothing written; 0 turns the check off."""

from __future__ import annotations

import pytest
import redis

from producer import Producer
from producer.errors import InvalidTaskError
from task_processor.settings import Settings


def producer_with(redis_url: str, limit: str) -> Producer:
    return Producer.from_env(Settings.from_env({"REDIS_URL": redis_url, "TASK_MAX_PAYLOAD": limit}))


def test_arguments_over_task_max_payload_are_refused_naming_size_limit_and_argument(
    redis_url: str, conn: redis.Redis
) -> None:
    producer = producer_with(redis_url, "1000")
    # [["x"*2000, "ab"], {}] serialized: 2016 bytes; the first argument alone, "x"*2000 quoted: 2002.
    with pytest.raises(InvalidTaskError) as info:
        producer.enqueue("worker.examples.add", "x" * 2000, "ab")
    assert str(info.value) == (
        "worker.examples.add: the arguments are too large: 2016 bytes serialized (argument 1 alone is 2002), over "
        "the limit TASK_MAX_PAYLOAD=1000: pass a reference (a path, URL or key) to the data instead, or raise "
        "TASK_MAX_PAYLOAD"
    )
    with pytest.raises(InvalidTaskError, match=r"\(keyword argument 'b' alone is 3002\), over the limit"):
        producer.enqueue("worker.examples.add", "a", b="y" * 3000)
    assert conn.dbsize() == 0  # nothing written
    # At the limit exactly is not over it: [["x"*984, "ab"], {}] is 1000 bytes.
    job = producer.enqueue("worker.examples.add", "x" * 984, "ab")
    assert conn.lrange("rq:queue:default", 0, -1) == [job.id.encode()]


def test_task_max_payload_0_turns_the_limit_off(redis_url: str, conn: redis.Redis) -> None:
    big = "z" * (2 * 1024 * 1024)  # twice the default limit
    with pytest.raises(InvalidTaskError, match="TASK_MAX_PAYLOAD=1048576"):
        producer_with(redis_url, "1048576").enqueue("worker.examples.add", big, "")
    assert conn.dbsize() == 0
    job = producer_with(redis_url, "0").enqueue("worker.examples.add", big, "")
    assert conn.lrange("rq:queue:default", 0, -1) == [job.id.encode()]
    stored = Producer(redis_url).queue().fetch_job(job.id)
    assert stored is not None
    assert stored.args == [big, ""]
