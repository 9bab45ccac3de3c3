"""rq-dashboard against the test Redis: it sees exactly what ``task-producer status`` sees, and renders it."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from producer import Producer
from producer.commands.dashboard import MUTATING_ENDPOINTS, READ_ENDPOINTS, _app_factory
from producer.commands.redis_server import free_port
from tests.chart import CHART, VARIANTS, Helm, env_of, find, the_container
from tests.conftest import Proc, as_bytes, run, wait_for

CHROMIUM = shutil.which("chromium")
REGISTRIES = ("started", "failed", "finished", "scheduled", "deferred")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


def answering(url: str) -> bool:
    try:
        get_json(url)
    except (OSError, ValueError):
        return False
    return True


Dashboard = Callable[..., str]


@pytest.fixture
def dashboard(spawn: Callable[..., Proc]) -> Dashboard:
    """Start a dashboard command on a free port; returns its base URL once it answers."""

    def start(*command: str) -> str:
        port = free_port()
        proc = spawn(*command, "--bind", "127.0.0.1", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answering(f"{base}/0/data/queues.json") or proc.popen.poll() is not None, what="dashboard")
        assert proc.popen.poll() is None, proc.output()
        return base

    return start


@pytest.fixture
def busy_redis(producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]) -> dict[str, str]:
    """Every registry of 'reports' holds something, one worker is busy on it and one idles on 'low'."""
    spawn("task-worker", "--queue", "reports", "--name", "busy-one")
    spawn("task-worker", "--queue", "low", "--name", "idle-one")
    done = producer.enqueue("worker.examples.add", 1, 2, queue="reports")
    failed = producer.enqueue("worker.examples.fail", "disk full", queue="reports")
    producer.wait([done], timeout=20)
    wait_for(lambda: failed.get_status(refresh=True) == "failed", timeout=20, what="the failed job")
    running = producer.enqueue("worker.examples.sleep", 120, queue="reports")
    wait_for(lambda: running.get_status(refresh=True) == "started", timeout=20, what="the running job")
    queue = producer.queue("reports")
    for _ in range(3):
        producer.enqueue("worker.examples.noop", queue="reports")
    queue.enqueue("worker.examples.noop", depends_on=running)
    queue.enqueue_in(timedelta(hours=1), "worker.examples.noop")
    producer.enqueue("worker.examples.noop", queue="low")
    wait_for(lambda: conn.zcard("rq:finished:low") == 1, timeout=20, what="the idle worker's job")
    return {"failed": failed.id, "running": running.id}


def test_the_dashboard_shows_what_status_shows(
    busy_redis: dict[str, str], dashboard: Dashboard, env: dict[str, str]
) -> None:
    ours = dashboard("task-producer", "dashboard")
    upstream = dashboard("rq-dashboard", "--json", "--redis-url", env["REDIS_URL"])
    status = json.loads(run(["task-producer", "status", "--json"], {**env, "TASK_QUEUES": "reports,low"}).stdout)

    for base in (ours, upstream):
        queues = {q["name"]: q for q in get_json(f"{base}/0/data/queues.json")["queues"]}
        assert set(queues) == set(status["queues"]) == {"reports", "low"}
        for name, facts in status["queues"].items():
            seen = {r: queues[name][f"{r}_job_registry_count"] for r in REGISTRIES}
            assert {"queued": queues[name]["count"], **seen} == {k: facts[k] for k in ("queued", *REGISTRIES)}
    assert status["queues"]["reports"] | {"oldest_queued_seconds": 0} == {
        "queued": 3,
        "started": 1,
        "failed": 1,
        "finished": 1,
        "scheduled": 1,
        "deferred": 1,
        "workers": 1,
        "busy_workers": 1,
        "oldest_queued_seconds": 0,
    }

    # Workers, each with its state and current job (rq-dashboard's own --json cannot read a busy worker's job).
    workers = get_json(f"{ours}/0/data/workers.json")["workers"]
    current = {w["name"]: (w["state"], w["current_job"]) for w in workers}
    assert current["busy-one"][1]["job_id"] == busy_redis["running"]
    assert {name: (state, job if job == "idle" else job["job_id"]) for name, (state, job) in current.items()} == {
        w["name"]: (w["state"], w["current_job"] or "idle") for w in status["workers"]["list"]
    }
    assert {w["name"]: w["state"] for w in status["workers"]["list"]} == {"busy-one": "busy", "idle-one": "idle"}

    # The failed job, listed in its registry and shown with its error.
    listed = get_json(f"{ours}/0/data/jobs/reports/failed/8/asc/1.json")["jobs"]
    assert [job["id"] for job in listed] == [busy_redis["failed"]]
    detail = get_json(f"{ours}/0/data/job/{busy_redis['failed']}.json")
    assert detail["status"] == "failed"
    assert detail["exc_info"].strip().splitlines()[-1] == "RuntimeError: disk full"


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


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium missing: run scripts/bootstrap")
def test_a_headless_browser_renders_the_queue_page(producer: Producer, dashboard: Dashboard, tmp_path: Path) -> None:
    producer.enqueue("worker.examples.noop", queue="reports-eu")
    base = dashboard("task-producer", "dashboard")
    page = f"{base}/0/view/queues"
    common = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,800",
        "--virtual-time-budget=5000",  # the queue table fills in from queues.json after the page loads
    ]
    shot = tmp_path / "queues.png"
    browsers = [
        subprocess.Popen(
            [*common, f"--user-data-dir={tmp_path / name}", *extra, page],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for name, extra in (("shot", [f"--screenshot={shot}"]), ("dom", ["--dump-dom"]))
    ]
    dom = browsers[1].communicate(timeout=60)[0].decode()
    browsers[0].communicate(timeout=60)
    assert "reports-eu" in dom  # the queue row the page's script drew
    image = shot.read_bytes()
    assert png_size(image) == (1280, 800)
    assert len(image) > 10_000, "a blank page compresses to almost nothing"


# --- read-only, and the login -----------------------------------------------------------------------------------


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


# --- the chart's dashboard -------------------------------------------------------------------------------------


DASHBOARD_VARIANTS = {
    "defaults": (),
    "writable": ("dashboard.readOnly=false",),
    "own-secret": ("dashboard.auth.existingSecret=my-login",),
    "other-port": ("dashboard.port=8080", "dashboard.auth.username=ops"),
    **{f"chart-{name}": sets for name, sets in VARIANTS.items()},
}


@pytest.mark.parametrize("variant", DASHBOARD_VARIANTS)
def test_the_charts_dashboard_asks_for_a_login_in_every_configuration(helm: Helm, variant: str) -> None:
    docs = helm.docs("dashboard.enabled=true", *DASHBOARD_VARIANTS[variant])
    container = the_container(docs, "Deployment", "task-processor-dashboard")
    env = env_of(container)
    secret = "my-login" if variant == "own-secret" else "task-processor-dashboard"
    for name, key in (("RQ_DASHBOARD_USERNAME", "username"), ("RQ_DASHBOARD_PASSWORD", "password")):
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}, variant
    if variant != "own-secret":
        data = find(docs, "Secret", secret)["data"]
        assert all(base64.b64decode(data[key]) for key in ("username", "password")), "an empty half of the login"
    read_only = "--read-only" in container["command"]
    assert read_only == (variant != "writable"), "the chart's dashboard is read-only unless dashboard.readOnly=false"


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("dashboard.auth.enabled=false", "additional properties 'enabled' not allowed"),
        ("dashboard.auth=null", "missing property 'auth'"),
        ("dashboard.auth.username=null", "missing property 'username'"),
        ("dashboard.auth.username=", "/dashboard/auth/username"),
        ("dashboard.readOnly=maybe", "/dashboard/readOnly"),
    ],
)
def test_the_chart_has_no_value_that_turns_the_login_off(helm: Helm, setting: str, complaint: str) -> None:
    result = helm.run("template", "x", str(CHART), "--set=dashboard.enabled=true", f"--set={setting}")
    assert result.returncode != 0, f"helm accepted {setting}"
    assert complaint in result.stderr, result.stderr


def test_the_charts_dashboard_stops_on_an_empty_login_secret(helm: Helm, env: dict[str, str]) -> None:
    """An existingSecret with an empty password: the rendered command refuses to serve rather than serve openly."""
    container = the_container(helm.docs("dashboard.enabled=true"), "Deployment", "task-processor-dashboard")
    login = {"RQ_DASHBOARD_USERNAME": "admin", "RQ_DASHBOARD_PASSWORD": ""}
    command = list(container["command"])
    command[command.index("--port") + 1] = str(free_port())
    result = run(command, {**env, **login})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "RQ_DASHBOARD_PASSWORD must both be set" in result.stderr
