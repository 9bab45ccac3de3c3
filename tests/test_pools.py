"""Worker pools as ops describe them on a Deployment: the annotations read, the defaults, the refusals, the
split of a shared queue, and a pool's demand counted from its own workers."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
import redis
from redis.typing import EncodableT, FieldT

from producer import Producer, Task
from producer.scaling.autoscaler import Autoscaler, TargetState
from producer.scaling.kube.client import DeploymentInfo
from producer.scaling.policy import Bounds
from producer.scaling.pools import POOL_LABEL, Pool, PoolError, pool_from, share, shares
from task_processor import keys
from task_processor.observe import WorkerInfo
from task_processor.settings import Settings
from tests.conftest import run

DEFAULTS = Settings(
    autoscale_min=0, autoscale_max=10, jobs_per_worker=10, scale_down_delay=60.0, target_wait=30.0, start_spares=1
)


def deployment(annotations: dict[str, str], pool: str = "bulk", name: str = "workers-bulk") -> DeploymentInfo:
    return DeploymentInfo(
        name=name, namespace="jobs", replicas=1, annotations=annotations, selector="", labels={POOL_LABEL: pool}
    )


def test_a_pool_takes_its_queues_and_bounds_from_its_annotations() -> None:
    pool = pool_from(
        deployment(
            {
                "task-processor.io/queues": "high, default",
                "task-processor.io/min-replicas": "1",
                "task-processor.io/max-replicas": "40",
                "task-processor.io/jobs-per-worker": "2",
                "task-processor.io/scale-down-delay": "120",
                "task-processor.io/target-wait": "off",
            }
        ),
        DEFAULTS,
    )
    assert pool == Pool("bulk", "workers-bulk", ("high", "default"), Bounds(1, 40, 2, 120.0, None, 1))


def test_a_missing_annotation_takes_the_autoscale_setting() -> None:
    pool = pool_from(deployment({"task-processor.io/queues": "bulk", "task-processor.io/max-replicas": " "}), DEFAULTS)
    assert pool.bounds == Bounds(0, 10, 10, 60.0, 30.0, 1)  # spares: AUTOSCALE_START_SPARES for every pool


@pytest.mark.parametrize(
    ("annotations", "named"),
    [
        ({}, "task-processor.io/queues is missing"),
        ({"task-processor.io/queues": " , "}, "task-processor.io/queues is empty"),
        ({"task-processor.io/queues": "a b"}, "task-processor.io/queues: 'a b' is not a valid queue name"),
        ({"task-processor.io/queues": "a,a"}, "task-processor.io/queues lists a queue twice"),
        ({"task-processor.io/max-replicas": "many"}, "task-processor.io/max-replicas='many' is not a number"),
        ({"task-processor.io/max-replicas": "0"}, "task-processor.io/max-replicas='0' is out of range"),
        ({"task-processor.io/min-replicas": "-1"}, "task-processor.io/min-replicas='-1' is out of range"),
        ({"task-processor.io/jobs-per-worker": "1.5"}, "task-processor.io/jobs-per-worker='1.5' is not a number"),
        ({"task-processor.io/scale-down-delay": "soon"}, "task-processor.io/scale-down-delay='soon' is not a number"),
        ({"task-processor.io/target-wait": "0"}, "task-processor.io/target-wait='0' is not a number of seconds > 0"),
        (
            {"task-processor.io/min-replicas": "5", "task-processor.io/max-replicas": "2"},
            "task-processor.io/max-replicas (2) is below task-processor.io/min-replicas (5)",
        ),
    ],
)
def test_a_bad_annotation_is_one_line_naming_the_deployment_and_the_annotation(
    annotations: dict[str, str], named: str
) -> None:
    notes = {"task-processor.io/queues": "bulk", **annotations}
    if annotations == {}:
        notes = {}
    with pytest.raises(PoolError) as refused:
        pool_from(deployment(notes), DEFAULTS)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("Deployment jobs/workers-bulk: "), message
    assert named in message, message


@pytest.mark.parametrize(
    ("queued", "pools", "expected"),
    [
        (10, 2, [5, 5]),
        (11, 2, [6, 5]),
        (1, 3, [1, 0, 0]),  # one job wakes one pool, the first by name
        (0, 2, [0, 0]),
        (7, 1, [7]),
        (-3, 2, [0, 0]),  # a stale negative count is nothing
    ],
)
def test_a_shared_queue_is_split_evenly_the_remainder_to_the_first_pools_by_name(
    queued: int, pools: int, expected: list[int]
) -> None:
    assert [share(queued, rank, pools) for rank in range(pools)] == expected
    assert sum(expected) == max(0, queued)


def test_shares_rank_each_queue_s_pools_by_name() -> None:
    bounds = Bounds(0, 10, 1, 0.0)
    pools = [Pool("gpu", "d-gpu", ("gpu", "shared"), bounds), Pool("bulk", "d-bulk", ("shared", "bulk"), bounds)]
    assert shares(pools) == {
        "bulk": {"shared": (0, 2), "bulk": (0, 1)},
        "gpu": {"gpu": (0, 1), "shared": (1, 2)},
    }


class Target:
    name = "workers-bulk"

    def __init__(self) -> None:
        self.state = TargetState(0)

    def read(self, fresh: bool = False) -> TargetState:
        return self.state

    def set_replicas(self, replicas: int, workers: Sequence[WorkerInfo] = ()) -> None:
        self.state = TargetState(replicas)


def register(conn: redis.Redis, name: str, pool: str | None, busy: bool, queues: str = "shared") -> None:
    conn.sadd(keys.WORKERS, f"{keys.WORKER_PREFIX}{name}")
    fields: dict[FieldT, EncodableT] = {
        "last_heartbeat": "2024-01-01T00:00:00Z",
        "queues": queues,
        "state": "busy" if busy else "idle",
    }
    fields.update({"hostname": name, "pid": "1"})
    if pool is not None:
        fields["pool"] = pool
    conn.hset(f"{keys.WORKER_PREFIX}{name}", mapping=fields)


def test_a_pool_counts_its_share_of_a_shared_queue_and_its_own_workers_jobs(
    conn: redis.Redis, producer: Producer
) -> None:
    producer.enqueue_many([Task("worker.examples.noop", queue="shared") for _ in range(9)])
    register(conn, "bulk-1", "bulk", busy=True)
    register(conn, "bulk-2", "bulk", busy=False)
    register(conn, "gpu-1", "gpu", busy=True)
    register(conn, "gpu-2", "gpu", busy=True)
    register(conn, "unnamed", None, busy=True)  # no WORKER_POOL: it counts for every pool of its queues
    register(conn, "elsewhere", None, busy=True, queues="other")
    bounds = Bounds(0, 50, 1, 0.0, target_wait=None)

    def look(pool: str, rank: int) -> tuple[int, int, int]:
        autoscaler = Autoscaler(conn, ("shared",), Target(), bounds, pool=pool, shares={"shared": (rank, 2)})
        o = autoscaler.observe().observation
        return o.queued, o.in_flight, o.busy_workers

    # 9 queued jobs: 5 for the first pool by name, 4 for the other; in flight: each pool's busy workers, and the
    # busy one that names no pool but serves the queue (a worker from before pools must not lose its Pod).
    assert look("bulk", 0) == (5, 2, 2)
    assert look("gpu", 1) == (4, 3, 3)


def test_run_local_sizes_one_deployment_per_pool_under_one_loop(env: dict[str, str], conn: redis.Redis) -> None:
    pools = ["--pool", "fast=fast", "--pool", "bulk=bulk,default"]
    command = ["task-producer", "run-local", "--jobs", "40", "--max", "2", "--scale-down-delay", "1", "--seed", "7"]
    result = run([*command, *pools], env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Enqueued 40 demo tasks on queues 'fast' (pool fast), 'bulk' (pool bulk)" in out
    assert "40 finished, 0 failed" in out
    for pool in ("fast", "bulk"):
        assert re.search(rf"pool {pool}: scaled up 0 -> [12] workers", out), out
        assert re.search(rf"scaling {pool}\s+0 -> .* -> 0 ", out), out
    assert (conn.zcard("rq:finished:fast"), conn.zcard("rq:finished:bulk")) == (20, 20)
    assert conn.scard("rq:workers") == 0


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (["--pool", "bulk"], "--pool 'bulk' is not NAME=QUEUE[,QUEUE]"),
        (["--pool", "Bulk=x"], "--pool 'Bulk=x' is not NAME=QUEUE[,QUEUE]"),
        (["--pool", "bulk="], "--pool bulk is empty"),
        (["--pool", "bulk=a b"], "--pool bulk: 'a b' is not a valid queue name"),
        (["--pool", "a=x", "--pool", "a=y"], "--pool a is given twice"),
    ],
)
def test_a_bad_pool_option_is_one_line_and_exit_2(env: dict[str, str], options: list[str], complaint: str) -> None:
    result = run(["task-producer", "run-local", "--jobs", "1", *options], env)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert complaint in line, line
