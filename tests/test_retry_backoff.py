"""Retries wait retry_backoff seconds before the first retry, twice as long before each next one, capped at an hour."""

from __future__ import annotations

import redis
from rq.job import Job

from producer import Producer


def test_retry_waits_double_each_time_and_are_capped_at_an_hour(producer: Producer, conn: redis.Redis) -> None:
    job = producer.enqueue("worker.examples.fail", retries=14, retry_backoff=1)
    stored = Job.fetch(job.id, connection=conn, serializer="json")
    # What RQ's worker reads when it schedules each retry: 1, 2, 4, ... 2048 s, then an hour, never more.
    assert stored.retry_intervals == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]
    assert stored.retries_left == 14
    slow = producer.enqueue("worker.examples.fail", retries=3, retry_backoff=1500)
    assert Job.fetch(slow.id, connection=conn, serializer="json").retry_intervals == [1500, 3000, 3600]
    over = producer.enqueue("worker.examples.fail", retries=2, retry_backoff=5000)
    assert Job.fetch(over.id, connection=conn, serializer="json").retry_intervals == [3600, 3600]
