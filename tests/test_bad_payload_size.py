"""Bad input, oversized payloads: an argument above the documented limit is refused at enqueue, and a payload
over Redis' own bulk limit (proto-max-bulk-len, made cheap to reach on a dedicated server) is refused as too
large, not blamed on the network, with nothing written and the producer still working.

The other kinds of bad input, and what these modules share: tests/bad_input.py.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis

from producer import InvalidTaskError, Producer, TaskProcessorError
from producer.commands.redis_server import LocalRedisServer


def test_an_argument_above_a_documented_limit_is_refused(producer: Producer, conn: redis.Redis) -> None:
    with pytest.raises(InvalidTaskError, match=r"argument 1.*(too large|limit)"):
        producer.enqueue("worker.examples.add", "x" * (50 * 1024 * 1024), "")
    assert conn.dbsize() == 0


@pytest.fixture
def small_bulk_redis() -> Any:
    """A dedicated redis-server whose proto-max-bulk-len is 1 MB: Redis' own 512 MB limit, made cheap to reach."""
    with LocalRedisServer(appendonly=False) as server:
        redis.Redis(port=server.port).config_set("proto-max-bulk-len", "1mb")
        yield server


def test_a_payload_over_the_redis_bulk_limit_writes_nothing(small_bulk_redis: LocalRedisServer) -> None:
    producer = Producer(small_bulk_redis.url)
    client = redis.Redis(port=small_bulk_redis.port)
    incompressible = os.urandom(2 * 1024 * 1024).hex()  # 4 MB that zlib cannot shrink below 1 MB
    with pytest.raises(TaskProcessorError) as info:
        producer.enqueue("worker.examples.add", incompressible, "")
    assert "\n" not in str(info.value)
    assert client.dbsize() == 0
    # The producer and the server go on working.
    job = producer.enqueue("worker.examples.add", 1, 2)
    assert client.lrange("rq:queue:default", 0, -1) == [job.id.encode()]


def test_a_payload_over_the_redis_bulk_limit_is_named_as_too_large(small_bulk_redis: LocalRedisServer) -> None:
    producer = Producer(small_bulk_redis.url)
    with pytest.raises(InvalidTaskError, match=r"too large|limit|size") as info:
        producer.enqueue("worker.examples.add", os.urandom(2 * 1024 * 1024).hex(), "")
    assert "cannot reach" not in str(info.value)
