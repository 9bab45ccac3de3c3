"""The dashboard command's login and read-only mode: a login asked for when one is set and required to listen beyond
loopback, every rq-dashboard 0.9 route classified as a read or a write, every write refused with 403 (and Redis
unchanged byte for byte) when read-only, the login checked before that refusal. What it shows:
tests/test_dashboard_views.py; the chart's dashboard: tests/test_chart_dashboard.py."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
import redis

from producer import Producer
from producer.commands.dashboard import MUTATING_ENDPOINTS, READ_ENDPOINTS, _app_factory
from producer.commands.redis_server import free_port
from tests.conftest import Proc, as_bytes, run, wait_for
from tests.dashboard import (
    Dashboard,
    dashboard_fixture,  # noqa: F401  (the dashboard fixture)
)


def test_the_dashboard_asks_for_a_login_when_one_is_set(
    redis_url: str, dashboard: Dashboard, spawn: Callable[..., Proc]
) -> None:
    port = free_port()
    spawn(
        "task-producer",
        "dashboard",
        "--port",
        str(port),
        extra_env={"RQ_DASHBOARD_USERNAME": "ops", "RQ_DASHBOARD_PASSWORD": "s3cret"},
    )
    url = f"http://127.0.0.1:{port}/0/data/queues.json"

    def status_code() -> int:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                status: int = reply.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    assert wait_for(status_code, what="the dashboard") == 401
    request = urllib.request.Request(url, headers={"Authorization": "Basic b3BzOnMzY3JldA=="})  # ops:s3cret
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert "queues" in json.loads(reply.read())


def call(base: str, method: str, path: str, login: str | None = None) -> tuple[int, str]:
    """One HTTP request; (status, body) whatever the status."""
    headers = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()} if login else {}
    request = urllib.request.Request(
        base + path, method=method, headers=headers, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:  # not listening (yet)
        return 0, str(exc)


@pytest.fixture
def failed_and_queued(producer: Producer, env: dict[str, str]) -> tuple[str, str]:
    """Queue 'ro': one job in its failed registry, then one queued job (no worker left to take it)."""
    failed = producer.enqueue("worker.examples.fail", "disk full", queue="ro")
    result = run(["task-worker", "--burst", "--queue", "ro"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert failed.get_status(refresh=True) == "failed"
    queued = producer.enqueue("worker.examples.noop", queue="ro")
    return failed.id, queued.id


def writes(failed: str, queued: str) -> list[tuple[str, str]]:
    """A request to every route of rq-dashboard 0.9 that changes Redis (MUTATING_ENDPOINTS), each method it takes."""
    return [
        ("POST", f"/job/{queued}/delete"),
        ("POST", f"/job/{failed}/requeue"),
        ("GET", "/requeue/ro"),
        ("POST", "/requeue/ro"),
        *(("POST", f"/queue/ro/{registry}/empty") for registry in ("queued", "failed", "finished", "scheduled")),
        ("POST", "/queue/ro/compact"),
    ]


def reads(failed: str) -> list[str]:
    """Every read route of rq-dashboard 0.9 (READ_ENDPOINTS), with the job and queue of the fixture."""
    return [
        "/",
        "/0/",
        "/0/view",
        "/0/view/queues",
        "/0/view/workers",
        "/0/view/jobs",
        "/0/view/jobs/ro/failed/8/asc/1",
        f"/0/view/job/{failed}",
        "/0/data/queues.json",
        "/0/data/workers.json",
        "/0/data/jobs/ro/failed/8/asc/1.json",
        f"/0/data/job/{failed}.json",
        "/favicon.ico",
        "/static/css/main.css",
    ]


def snapshot(conn: redis.Redis) -> dict[bytes, bytes | None]:
    return {key: conn.dump(key) for key in sorted(as_bytes(raw) for raw in conn.keys("*"))}


def test_read_only_refuses_every_write_and_the_jobs_stay(
    failed_and_queued: tuple[str, str], dashboard: Dashboard, conn: redis.Redis
) -> None:
    failed, queued = failed_and_queued
    base = dashboard("task-producer", "dashboard", "--read-only")
    for path in reads(failed):
        status, _ = call(base, "GET", path)
        assert status == 200, f"GET {path} answered {status} on a read-only dashboard"
    assert call(base, "HEAD", "/0/data/queues.json")[0] == 200
    before = snapshot(conn)
    for method, path in writes(failed, queued):
        status, body = call(base, method, path)
        assert status == 403, f"{method} {path} answered {status}: {body}"
        assert body == f"read-only dashboard: {method} {path} is refused (only views and data reads are served)\n"
    for method in ("PUT", "DELETE", "PATCH"):  # no route takes them: Flask's 405, nothing runs
        assert call(base, method, f"/job/{queued}/delete")[0] in (403, 405)
    assert snapshot(conn) == before, "a refused request changed Redis"
    assert conn.lrange("rq:queue:ro", 0, -1) == [queued.encode()]
    assert conn.zrange("rq:failed:ro", 0, -1) == [failed.encode()]
    # The delete and empty buttons are hidden; the 403s above are what holds.
    assert "Empty queue" not in call(base, "GET", "/0/view/jobs/ro/failed/8/asc/1")[1]


def test_without_read_only_delete_requeue_and_empty_work(
    failed_and_queued: tuple[str, str], dashboard: Dashboard, conn: redis.Redis, producer: Producer
) -> None:
    failed, queued = failed_and_queued
    base = dashboard("task-producer", "dashboard")
    assert call(base, "POST", f"/job/{queued}/delete") == (200, '{"status":"OK"}\n')
    assert not conn.exists(f"rq:job:{queued}")
    assert call(base, "POST", f"/job/{failed}/requeue")[0] == 200
    assert conn.lrange("rq:queue:ro", 0, -1) == [failed.encode()]
    assert call(base, "POST", "/queue/ro/queued/empty")[0] == 200
    assert conn.llen("rq:queue:ro") == 0


def test_a_write_route_rq_dashboard_might_add_is_refused_too() -> None:
    """The read-only check is an allow list: a route it does not know is refused, GET or POST."""
    from rq_dashboard import cli

    app = _app_factory(cli.make_flask_app, "127.0.0.1", read_only=True)(None, None, None, "")
    app.add_url_rule("/queue/<name>/pause", "rq_dashboard.pause_queue", lambda name: "paused", methods=["GET", "POST"])
    client = app.test_client()
    for method in ("GET", "POST"):
        reply = client.open("/queue/x/pause", method=method)
        assert reply.status_code == 403, method
        assert reply.get_data(as_text=True).startswith(f"read-only dashboard: {method} /queue/x/pause is refused")


def test_every_route_of_rq_dashboard_is_known_as_a_read_or_a_write() -> None:
    """A new rq-dashboard release with another route fails here: list it in READ_ENDPOINTS or MUTATING_ENDPOINTS."""
    from rq_dashboard import cli

    app = cli.make_flask_app(None, None, None, "")
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints == READ_ENDPOINTS | MUTATING_ENDPOINTS.keys()
    assert not READ_ENDPOINTS & MUTATING_ENDPOINTS.keys()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in READ_ENDPOINTS:
            assert rule.methods <= {"GET", "HEAD", "OPTIONS"}, rule


def test_the_login_comes_before_the_read_only_refusal(
    failed_and_queued: tuple[str, str], dashboard: Dashboard, spawn: Callable[..., Proc]
) -> None:
    failed, queued = failed_and_queued
    port = free_port()
    spawn(
        "task-producer",
        "dashboard",
        "--read-only",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        extra_env={"RQ_DASHBOARD_USERNAME": "ops", "RQ_DASHBOARD_PASSWORD": "s3cret"},
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: call(base, "GET", "/0/data/queues.json")[0] == 401, what="the dashboard")
    for method, path in writes(failed, queued)[:2]:
        assert call(base, method, path)[0] == 401
        assert call(base, method, path, "ops:wrong")[0] == 401
        assert call(base, method, path, "ops:s3cret")[0] == 403
    for path in ("/static/css/main.css", "/favicon.ico", f"/0/data/job/{failed}.json"):
        assert call(base, "GET", path)[0] == 401, path  # the whole app, not only rq-dashboard's blueprint
        assert call(base, "GET", path, "ops:s3cret")[0] == 200, path


@pytest.mark.parametrize(
    ("bind", "login", "complaint"),
    [
        ("0.0.0.0", {}, "dashboard --bind 0.0.0.0 without a login: set RQ_DASHBOARD_USERNAME and"),
        ("::", {}, "dashboard --bind :: without a login"),
        ("127.0.0.1", {"RQ_DASHBOARD_USERNAME": "ops"}, "RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD must both"),
        ("0.0.0.0", {"RQ_DASHBOARD_USERNAME": "", "RQ_DASHBOARD_PASSWORD": "pw"}, "must both be set"),
    ],
)
def test_a_dashboard_beyond_loopback_refuses_to_start_without_a_login(
    env: dict[str, str], bind: str, login: dict[str, str], complaint: str
) -> None:
    result = run(["task-producer", "dashboard", "--bind", bind, "--port", str(free_port())], {**env, **login})
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("task-producer: error: "), line
    assert complaint in line, line
