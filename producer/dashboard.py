"""``task-producer dashboard``: rq-dashboard on our Redis, reading jobs and workers with our serializer.

rq-dashboard 0.9's ``--json`` applies the JSON serializer to queues and jobs but not to workers: its Workers
page reads each busy worker's current job with pickle and answers 500 while any worker runs a JSON job. This
command runs the same rq-dashboard, with the serializer of TASK_SERIALIZER applied to workers too. rq-dashboard
is the ``dashboard`` extra (``pip install 'task-processor[dashboard]'``); its ``RQ_DASHBOARD_*`` variables
(``RQ_DASHBOARD_USERNAME``/``RQ_DASHBOARD_PASSWORD`` for basic auth) work as usual.
"""

from __future__ import annotations

from typing import Any

from rq.serializers import Serializer
from rq.worker import Worker

from worker.errors import ConfigError
from worker.settings import Settings


def _workers_read_with(serializer: Serializer) -> type[Worker]:
    class DashboardWorker(Worker):
        @classmethod
        def all(cls, *args: Any, **kwargs: Any) -> list[Any]:
            kwargs["serializer"] = kwargs.get("serializer") or serializer
            return super().all(*args, **kwargs)

    return DashboardWorker


def run_dashboard(settings: Settings, bind: str, port: int) -> int:
    try:
        from rq_dashboard import cli, web
    except ImportError as exc:
        raise ConfigError(f"rq-dashboard is not installed ({exc}): pip install 'task-processor[dashboard]'") from None
    web.Worker = _workers_read_with(settings.serializer)
    args = ["--bind", bind, "--port", str(port)]
    if settings.serializer_name == "json":
        args.append("--json")
    # The URL goes in as a default, not an argument: a password in it must not show in `ps`.
    cli.run.main(
        args=args,
        prog_name="task-producer dashboard",
        auto_envvar_prefix="RQ_DASHBOARD",
        default_map={"redis_url": [settings.redis_url]},
        standalone_mode=False,
    )
    return 0
