"""``task-producer dashboard``: rq-dashboard on our Redis, with our serializer, a real login and a read-only mode.

rq-dashboard 0.9's ``--json`` applies the JSON serializer to queues and jobs but not to workers: its Workers
page reads each busy worker's current job with pickle and answers 500 while any worker runs a JSON job. This
command runs the same rq-dashboard, with the serializer of TASK_SERIALIZER applied to workers too. rq-dashboard
is the ``dashboard`` extra (``pip install 'task-processor[dashboard]'``); its ``RQ_DASHBOARD_*`` variables
(``RQ_DASHBOARD_USERNAME``/``RQ_DASHBOARD_PASSWORD`` for basic auth) work as usual.

Four boundaries are ours rather than upstream's:

- the login guards the whole app (upstream's guards its blueprint only, and compares passwords in variable
  time), and comes before anything else a request may trigger;
- a dashboard that listens beyond this machine must have a login: without one it refuses to start, so no
  configuration (an empty Secret, a forgotten variable) serves the queues to the network unauthenticated;
- ``--read-only`` serves the views and JSON reads of ``READ_ENDPOINTS`` to GET and HEAD, and answers 403 to
  anything else. It is an allow list, so a route a later rq-dashboard adds is refused until it is listed;
- the Redis URLs its pages list are masked as our logs mask them (upstream misses a ``?password=`` argument).

Its Redis client is ours (``task_processor.connection.connect``), for every URL form REDIS_URL takes: with
``redis+sentinel://`` it follows the master across a failover like every other process.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from typing import Any

from rq.serializers import Serializer
from rq.worker import Worker

from task_processor.connection import connect, redact_url
from task_processor.errors import ConfigError
from task_processor.settings import Settings

READ_ENDPOINTS = frozenset(
    {
        "static",  # the app's own static files (CSS, JS)
        "rq_dashboard.static",  # the blueprint's copy of them
        "rq_dashboard.favicon",
        "rq_dashboard.queues_overview",  # / and /<n>/view/queues: the Queues page
        "rq_dashboard.workers_overview",  # /<n>/view/workers
        "rq_dashboard.jobs_overview",  # /<n>/view/jobs/...
        "rq_dashboard.job_view",  # /<n>/view/job/<id>
        "rq_dashboard.list_queues",  # /<n>/data/queues.json
        "rq_dashboard.list_jobs",  # /<n>/data/jobs/<queue>/<registry>/<per_page>/<order>/<page>.json
        "rq_dashboard.job_info",  # /<n>/data/job/<id>.json
        "rq_dashboard.list_workers",  # /<n>/data/workers.json
    }
)
"""The rq-dashboard 0.9 endpoints that only read Redis: all a read-only dashboard serves."""

MUTATING_ENDPOINTS = {
    "rq_dashboard.delete_job_view": "POST /job/<id>/delete: deletes a job",
    "rq_dashboard.requeue_job_view": "POST /job/<id>/requeue: requeues a failed job",
    "rq_dashboard.requeue_all": "GET or POST /requeue/<queue>: requeues every failed job of a queue",
    "rq_dashboard.empty_queue": "POST /queue/<queue>/<registry>/empty: deletes every job of a queue or registry",
    "rq_dashboard.compact_queue": "POST /queue/<queue>/compact: rewrites a queue without its missing jobs",
}
"""rq-dashboard 0.9's routes that change Redis (note the GET of requeue_all): refused by --read-only. Not
consulted at run time (the allow list above decides); the tests check that every route is in one of the two."""

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods a read-only dashboard answers; any other is refused whatever the route."""

REALM = "RQ Dashboard"


def _workers_read_with(serializer: Serializer) -> type[Worker]:
    class DashboardWorker(Worker):
        @classmethod
        def all(cls, *args: Any, **kwargs: Any) -> list[Any]:
            kwargs["serializer"] = kwargs.get("serializer") or serializer
            return super().all(*args, **kwargs)

    return DashboardWorker


def _redacted_urls(urls: str | list[str] | tuple[str, ...]) -> list[str]:
    return [redact_url(url) for url in ([urls] if isinstance(urls, str) else urls)]


def _client(url: str, **_: Any) -> tuple[None, Any]:
    """Stands in for ``redis_sentinel_url.connect``, which rq-dashboard calls (its password options come from the
    URL here): (no Sentinel object, the client)."""
    return None, connect(url)


def _is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it needs a login


def check_login(bind: str, username: str | None, password: str | None) -> bool:
    """Whether the dashboard will ask for a login; refuse a half login, and no login off this machine."""
    if username or password:
        if not (username and password):
            raise ConfigError(
                "dashboard login: RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD must both be set (one of them "
                "is empty)"
            )
        return True
    if not _is_loopback(bind):
        raise ConfigError(
            f"dashboard --bind {bind} without a login: set RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD, or "
            "bind 127.0.0.1"
        )
    return False


def _same(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").encode(), expected.encode())


def _login(username: str, password: str) -> Callable[[], Any]:
    from flask import Response, request

    def ask_for_login() -> Response | None:
        auth = request.authorization
        # Both halves compared every time (`&`, no short circuit), each in constant time.
        if (
            auth is not None
            and auth.type == "basic"
            and _same(auth.username, username) & _same(auth.password, password)
        ):
            return None
        return Response("Please log in\n", 401, {"WWW-Authenticate": f'Basic realm="{REALM}"'}, mimetype="text/plain")

    return ask_for_login


def _refuse_writes() -> Any:
    from flask import Response, request

    if request.routing_exception is not None:
        return None  # no route matched: Flask answers 404/405 and nothing runs
    if request.method in READ_METHODS and request.endpoint in READ_ENDPOINTS:
        return None
    return Response(
        f"read-only dashboard: {request.method} {request.path} is refused (only views and data reads are served)\n",
        403,
        mimetype="text/plain",
    )


def _app_factory(original: Callable[..., Any], bind: str, read_only: bool) -> Callable[..., Any]:
    """rq-dashboard's ``make_flask_app``, with our login and read-only checks as the app's first hooks."""

    def make_flask_app(
        config: str | None, username: str | None, password: str | None, url_prefix: str, *args: Any
    ) -> Any:
        login = check_login(bind, username, password)
        app = original(config, None, None, url_prefix, *args)  # upstream's blueprint-only login: replaced
        # App-level hooks run before the blueprint's (which opens the Redis connection), in this order.
        if login:
            app.before_request(_login(username or "", password or ""))
        if read_only:
            app.before_request(_refuse_writes)
        return app

    return make_flask_app


def run_dashboard(settings: Settings, bind: str, port: int, read_only: bool = False) -> int:
    try:
        from rq_dashboard import cli, web
    except ImportError as exc:
        raise ConfigError(f"rq-dashboard is not installed ({exc}): pip install 'task-processor[dashboard]'") from None
    web.Worker = _workers_read_with(settings.serializer)
    # Its pages list the Redis URLs; upstream masks user:password@ only, not a ?password= argument.
    web.escape_format_instance_list = _redacted_urls
    web.from_url = _client
    cli.make_flask_app = _app_factory(cli.make_flask_app, bind, read_only)
    # --normal: never Flask's debugger (it runs code typed into the browser), whatever RQ_DASHBOARD_DEBUG says.
    args = ["--bind", bind, "--port", str(port), "--normal"]
    if settings.serializer_name == "json":
        args.append("--json")
    if read_only:
        args.append("--disable-delete")  # hides the delete buttons; the 403s above are what enforce it
    # The URL goes in as a default, not an argument: a password in it must not show in `ps`.
    cli.run.main(
        args=args,
        prog_name="task-producer dashboard",
        auto_envvar_prefix="RQ_DASHBOARD",
        default_map={"redis_url": [settings.redis_url]},
        standalone_mode=False,
    )
    return 0
