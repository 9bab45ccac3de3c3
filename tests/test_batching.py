"""The slots' Lua calls sent together (``worker.batching``): each call gets its own reply or error, calls made at
the same time share round trips, and a Redis that lost its scripts or went away is handled as redis-py would."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from producer.commands.redis_server import LocalRedisServer
from task_processor.connection import connect
from worker.batching import BatchedCalls

SLOTS = 8
CALLS = 200

# Records the call, and spins a little inside Redis so that other slots' calls queue up meanwhile.
COUNT = """
redis.call('RPUSH', KEYS[1], ARGV[1])
for _ = 1, 200000 do end
return tonumber(ARGV[1]) * 2
"""


def stat(conn: redis.Redis, name: str) -> int:
    return int(conn.info("stats")[name])


def test_every_slot_gets_its_own_reply_and_concurrent_calls_share_round_trips(conn: redis.Redis) -> None:
    calls = BatchedCalls(conn)
    script = conn.register_script(COUNT)
    replies: dict[int, int] = {}

    def slot(index: int) -> None:
        for n in range(index, CALLS, SLOTS):
            replies[n] = calls.call(script, ["calls"], [n])

    reads = stat(conn, "total_reads_processed")
    with ThreadPoolExecutor(SLOTS) as pool:
        list(pool.map(slot, range(SLOTS)))
    reads = stat(conn, "total_reads_processed") - reads
    assert replies == {n: 2 * n for n in range(CALLS)}
    assert sorted(int(n) for n in conn.lrange("calls", 0, -1)) == list(range(CALLS))  # each ran exactly once
    # Redis read the 200 calls in far fewer reads than one per call: they came in batches.
    assert reads < CALLS / 2, reads


def test_an_error_belongs_to_its_call_alone(conn: redis.Redis) -> None:
    conn.set("not-a-list", "x")
    calls = BatchedCalls(conn)
    script = conn.register_script("return redis.call('RPUSH', KEYS[1], ARGV[1])")
    barrier = threading.Barrier(SLOTS)

    def slot(index: int) -> object:
        barrier.wait()
        key = "not-a-list" if index == 3 else f"list-{index}"
        try:
            return calls.call(script, [key], [index])
        except redis.ResponseError as exc:
            return exc

    with ThreadPoolExecutor(SLOTS) as pool:
        results = list(pool.map(slot, range(SLOTS)))
    assert isinstance(results[3], redis.ResponseError)
    assert "WRONGTYPE" in str(results[3])
    assert [r for i, r in enumerate(results) if i != 3] == [1] * (SLOTS - 1)


def test_scripts_flushed_from_redis_are_loaded_again(conn: redis.Redis) -> None:
    calls = BatchedCalls(conn)
    script = conn.register_script("return ARGV[1]")
    assert calls.call(script, [], ["before"]) == b"before"
    conn.script_flush()  # what a Redis restart does to the script cache
    barrier = threading.Barrier(4)

    def slot(index: int) -> object:
        barrier.wait()
        return calls.call(script, [], [f"after-{index}"])

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(slot, range(4))) == [f"after-{i}".encode() for i in range(4)]


def test_a_lost_redis_fails_the_call_and_the_next_call_reconnects() -> None:
    with LocalRedisServer(appendonly=False) as server:
        conn = connect(server.url)
        calls = BatchedCalls(conn)
        script = conn.register_script("return 1")
        assert calls.call(script, [], []) == 1
        server.kill()
        with pytest.raises(redis.ConnectionError):
            calls.call(script, [], [])
        server.start()
        assert calls.call(script, [], []) == 1  # a fresh connection, and the script loaded into the new Redis


@pytest.mark.timeout(60)
def test_a_posted_call_left_unread_when_redis_went_away_fails_and_later_calls_get_their_own_replies() -> None:
    """A posted call's reply is owed on the connection it went out on. When Redis is gone by then and the next call
    cannot reach it either, the posted call fails with that connection: its reply never comes on the next one, where
    reading one for it would take the next call's reply and leave that call waiting for one that never comes."""
    with LocalRedisServer(appendonly=False) as server:
        conn = connect(server.url)
        calls = BatchedCalls(conn)
        echo = conn.register_script("return ARGV[1]")
        assert calls.call(echo, [], ["loaded"]) == b"loaded"
        server.kill()
        posted = calls.post(echo, [], ["posted"])  # written to the closed connection: nothing to tell yet
        assert not posted.done
        with pytest.raises(redis.ConnectionError):
            calls.call(echo, [], ["while away"])
        assert posted.done
        assert isinstance(posted.error, redis.ConnectionError)
        server.start()
        assert calls.call(echo, [], ["after"]) == b"after"
