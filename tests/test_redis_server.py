"""The private redis-server of run-local and the tests: it is our own process, never a stranger on the port."""

from __future__ import annotations

import pytest
import redis
from redis.typing import EncodableT, FieldT

from producer.commands.redis_server import STREAM_NODE_MAX_BYTES, LocalRedisServer, PortTakenError


def test_a_port_taken_by_another_redis_is_refused_not_shared() -> None:
    with LocalRedisServer(appendonly=False) as first:
        redis.Redis.from_url(first.url).set("mine", "1")
        with pytest.raises(PortTakenError, match=rf"port {first.port} is in use by another process"):
            LocalRedisServer(port=first.port, appendonly=False).start()
        assert redis.Redis.from_url(first.url).get("mine") == b"1"


def test_a_picked_port_taken_before_the_server_binds_it_is_picked_again() -> None:
    with LocalRedisServer(appendonly=False) as first:
        second = LocalRedisServer(appendonly=False)
        second.port = first.port  # as if another process took the free port between the pick and the bind
        with second:
            assert second.port != first.port
            assert second.process is not None
            assert redis.Redis.from_url(second.url).info("server")["process_id"] == second.process.pid


def test_a_finished_jobs_result_stream_is_small_on_the_private_redis() -> None:
    """RQ keeps each result in a stream of its own, which a default Redis allocates 4 KB for."""
    with LocalRedisServer(appendonly=False) as server:
        connection = redis.Redis.from_url(server.url)
        assert connection.config_get("stream-node-max-bytes") == {"stream-node-max-bytes": str(STREAM_NODE_MAX_BYTES)}
        fields: dict[FieldT, EncodableT] = {
            "type": "1",
            "worker_name": "w" * 20,
            "execution_id": "e" * 32,
            "return_value": "3",
        }
        connection.xadd("rq:results:one", fields, maxlen=10, approximate=True)
        usage = connection.memory_usage("rq:results:one")
        assert usage is not None
        assert usage < 1200
