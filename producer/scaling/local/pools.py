"""run-local's worker pools: one LocalDeployment of ``task-worker`` processes per pool, fixed for the run.

Without ``--pool`` there is one pool, ``default``, serving ``TASK_QUEUES`` as before pools; with them, each pool's
workers serve its own queues and name their pool (``WORKER_POOL``), as the chart's workers do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import redis

from producer.scaling.autoscaler import EventSink, ScaleTarget
from producer.scaling.local.deployment import LocalDeployment
from producer.scaling.pools import Pool


class LocalPools:
    def __init__(
        self, connection: redis.Redis, env: Mapping[str, str], pools: Mapping[str, Pool], log_dir: Path
    ) -> None:
        self._pools = dict(pools)
        self.deployments: dict[str, LocalDeployment] = {}
        for name, pool in self._pools.items():
            pool_env = {**env, "TASK_QUEUES": ",".join(pool.queues)}
            if pool.labelled:
                pool_env["WORKER_POOL"] = name
            self.deployments[name] = LocalDeployment(
                connection,
                pool_env,
                pool.queues,
                replicas=pool.bounds.minimum,
                log_file=log_dir / ("workers.log" if len(self._pools) == 1 else f"workers-{name}.log"),
                name=pool.deployment,
            )

    def start(self) -> LocalPools:
        for deployment in self.deployments.values():
            deployment.start()
        return self

    def close(self) -> None:
        for deployment in self.deployments.values():
            deployment.close()

    def pools(self) -> dict[str, Pool]:
        return dict(self._pools)

    def target(self, pool: Pool) -> tuple[ScaleTarget, EventSink | None]:
        return self.deployments[pool.name], None
