"""The Prometheus endpoint every process of ours serves (workers, the autoscaler, run-local), off unless
METRICS_PORT is set."""

from __future__ import annotations

import errno

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    disable_created_metrics,
    start_http_server,
)

from task_processor.errors import ConfigError
from task_processor.logs import get_logger

log = get_logger("task_processor.metrics")

disable_created_metrics()  # the `_created` series double every counter for no use on a dashboard


def new_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors every Python exporter shows."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


def serve(port: int, bind: str, registry: CollectorRegistry) -> bool:
    """Serve ``registry`` on ``http://bind:port/metrics`` from a daemon thread; port 0 means off (returns False).

    ``bind`` is METRICS_BIND: loopback by default, because /metrics names queues and task functions and
    answers anyone who can reach it; the chart binds the Pod's own IP so that Prometheus (and nothing in the Pod
    network namespace's other interfaces) reaches it.
    """
    if not port:
        return False
    try:
        start_http_server(port, addr=bind, registry=registry)
    except (OSError, OverflowError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(
                f"METRICS_BIND={bind}: cannot listen there ({exc}): use an address of this machine, such as "
                "127.0.0.1 or the Pod's IP"
            ) from exc
        raise ConfigError(
            f"METRICS_PORT={port}: cannot listen there ({exc}): pick a free port, or 0 to turn metrics off"
        ) from exc
    log.info("serving Prometheus metrics", address=bind, port=port, path="/metrics")
    return True
