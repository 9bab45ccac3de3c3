"""What leaves a process: the Redis password appears in no log line, output, metric, error or `ps` line of the
real commands, and /metrics answers on METRICS_BIND only.

Each test runs against its own password-protected redis-server (the password in a config file, so not even
that server's `ps` line shows it), with a random password that nothing else on this machine can contain.
"""

from __future__ import annotations

import base64
import io
import secrets
import shutil
import signal
import socket
import subprocess
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from producer import Producer
from producer.commands.redis_server import free_port
from task_processor.errors import TaskProcessorError
from task_processor.logs import configure_logging, get_logger
from task_processor.settings import Settings
from tests.conftest import Proc, run, wait_for
from tests.kubeapi.fixtures import kube_api  # noqa: F401
from tests.kubeapi.server import KubeAPI

PASSWORD = "Pw" + secrets.token_hex(12)
WRONG = "Wr" + secrets.token_hex(12)
"""Letters and digits (they go into a URL as they are); random, so a hit can only be a leak."""


class SecretRedis:
    """A redis-server that requires PASSWORD, read from its config file; stopped and started on one port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.conf = directory / "redis.conf"
        self.conf.write_text(
            f'port {self.port}\nbind 127.0.0.1\nrequirepass {PASSWORD}\nsave ""\nappendonly no\n'
            f"dir {directory}\nlogfile {directory / 'redis.log'}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, password: str = PASSWORD) -> str:
        return f"redis://:{password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen([str(shutil.which("redis-server")), str(self.conf)])
        client = redis.Redis(port=self.port, password=PASSWORD)
        wait_for(lambda: _pings(client), what="the password-protected redis-server")
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SecretRedis]:
    server = SecretRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def secret_env(env: dict[str, str], server: SecretRedis) -> dict[str, str]:
    return {**env, "REDIS_URL": server.url(), "TASK_MODULES": "worker.examples", "LOG_LEVEL": "DEBUG"}


def assert_no_secret(text: str, where: str, *also: str) -> None:
    for secret in (PASSWORD, WRONG, *also):
        leaks = [line for line in text.splitlines() if secret in line]
        assert not leaks, f"{where} shows a password:\n" + "\n".join(leaks[:5])


def ps() -> str:
    return subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True, check=True).stdout


def get(url: str, login: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()} if login else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as reply:
            return reply.status, reply.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def metrics(port: int, host: str = "127.0.0.1") -> str:
    status, body = get(f"http://{host}:{port}/metrics")
    return body if status == 200 else ""


# --- the worker -----------------------------------------------------------------------------------------------


def test_a_workers_logs_metrics_and_ps_line_never_show_the_password(
    server: SecretRedis, secret_env: dict[str, str], spawn: Callable[..., Proc]
) -> None:
    port = free_port()
    worker = spawn("task-worker", extra_env={**secret_env, "METRICS_PORT": str(port)})
    wait_for(lambda: "worker starting" in worker.output(), what="the worker to start")
    producer = Producer(server.url())
    done, failed = producer.enqueue("worker.examples.add", 1, 2), producer.enqueue("worker.examples.fail", "disk")
    wait_for(lambda: failed.get_status(refresh=True) == "failed", timeout=20, what="the failing job")
    assert producer.wait([done], timeout=20) == [3]
    assert_no_secret(ps(), "ps")
    assert_no_secret(wait_for(lambda: metrics(port), what="/metrics"), "the worker's /metrics")

    server.stop()  # a lost Redis, then the same Redis back
    wait_for(lambda: "lost Redis" in worker.output(), timeout=20, what="the worker to notice")
    server.start()
    wait_for(lambda: "reconnected to Redis" in worker.output(), timeout=30, what="the worker to reconnect")
    again = producer.enqueue("worker.examples.add", 2, 2)
    assert producer.wait([again], timeout=30) == [4]
    # A rotated password: the worker's next connection is refused.
    redis.Redis(port=server.port, password=PASSWORD).config_set("requirepass", WRONG)
    redis.Redis(port=server.port, password=WRONG).client_kill_filter(_type="normal", skipme=True)
    time.sleep(2)
    worker.signal(signal.SIGTERM)
    worker.wait()
    assert_no_secret(worker.output(), "the worker's log")


@pytest.mark.parametrize("command", [["task-worker"], ["task-worker", "check"]])
def test_a_refused_password_is_one_line_without_it(
    server: SecretRedis, secret_env: dict[str, str], command: list[str]
) -> None:
    result = run(command, {**secret_env, "REDIS_URL": server.url(WRONG)})
    assert result.returncode != 0
    assert "refused the credentials" in result.stderr
    assert_no_secret(result.stdout + result.stderr, " ".join(command))


def test_logged_exceptions_do_not_show_local_variables() -> None:
    """JSON logs render each logged exception's frames; a frame's locals (a URL, a client's AUTH arguments)
    are not part of them."""
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)

    def connect(url: str) -> None:
        raise redis.ConnectionError("connection refused")

    try:
        connect(f"redis://:{PASSWORD}@127.0.0.1:1/0")
    except redis.ConnectionError:
        get_logger("task_processor.test").exception("cannot connect")
    assert "connection refused" in stream.getvalue()
    assert_no_secret(stream.getvalue(), "a logged exception")


# --- task-producer --------------------------------------------------------------------------------------------


def test_status_shows_no_password(server: SecretRedis, secret_env: dict[str, str]) -> None:
    Producer(server.url()).enqueue("worker.examples.noop")
    for args in (["status"], ["status", "--json"]):
        result = run(["task-producer", *args], secret_env)
        assert result.returncode == 0, result.stderr
        assert "default" in result.stdout
        assert_no_secret(result.stdout + result.stderr, f"task-producer {' '.join(args)}")


def bad_urls(server: SecretRedis) -> dict[str, str]:
    """REDIS_URLs that fail, each holding PASSWORD (or WRONG) somewhere."""
    closed = free_port()
    half = len(PASSWORD) // 2
    return {
        "unreachable": f"redis://:{PASSWORD}@127.0.0.1:{closed}/0",
        "refused password": server.url(WRONG),
        "user and refused password": f"redis://default:{WRONG}@127.0.0.1:{server.port}/0",
        "password as a query argument": f"redis://127.0.0.1:{closed}/0?password={PASSWORD}",
        "unencoded '/' in the password": f"redis://:{PASSWORD[:half]}/{PASSWORD[half:]}@127.0.0.1:{closed}/0",
        "unencoded '#' in the password": f"redis://:{PASSWORD[:half]}#{PASSWORD[half:]}@127.0.0.1:{closed}/0",
    }


def halves() -> tuple[str, str]:
    return PASSWORD[: len(PASSWORD) // 2], PASSWORD[len(PASSWORD) // 2 :]


@pytest.mark.parametrize("command", [["enqueue", "worker.examples.add", "1", "2"], ["status", "--json"]])
def test_command_errors_show_no_password(server: SecretRedis, secret_env: dict[str, str], command: list[str]) -> None:
    for case, url in bad_urls(server).items():
        result = run(["task-producer", *command], {**secret_env, "REDIS_URL": url})
        assert result.returncode != 0, case
        # LOG_LEVEL=DEBUG: redis-py 8.2 logs each failed read at debug level; every other line is the one error.
        (line,) = [line for line in result.stderr.splitlines() if '"level": "debug"' not in line]
        assert line.startswith("task-producer: error: "), line
        assert_no_secret(result.stdout + result.stderr, f"task-producer {command[0]} ({case})", *halves())


def test_python_api_errors_show_no_password(server: SecretRedis) -> None:
    for case, url in bad_urls(server).items():
        with pytest.raises(TaskProcessorError) as caught:
            Producer(url).enqueue("worker.examples.noop")
        shown = "".join(traceback.format_exception(caught.value))  # the chained causes too
        assert_no_secret(f"{caught.value}\n{caught.value!r}\n{shown}", f"the API's error ({case})", *halves())
    producer = Producer(server.url())
    assert_no_secret(f"{producer!r} {producer.connection!r}", "repr of a Producer")


def test_the_settings_repr_shows_no_password(server: SecretRedis) -> None:
    assert_no_secret(repr(Settings.from_env({"REDIS_URL": server.url()})), "repr of Settings")


def test_the_autoscalers_logs_and_metrics_show_no_password(
    kube_api: KubeAPI,  # noqa: F811
    server: SecretRedis,
    secret_env: dict[str, str],
    spawn: Callable[..., Proc],
) -> None:
    kube_api.create_deployment("task-processor", replicas=0)
    port = free_port()
    extra = {"WORKER_NAMESPACE": "default", "AUTOSCALE_INTERVAL": "0.05", "METRICS_PORT": str(port)}
    autoscaler = spawn(
        "task-producer", "autoscale", "--kubeconfig", str(kube_api.kubeconfig), extra_env={**secret_env, **extra}
    )
    Producer(server.url()).enqueue("worker.examples.noop")
    wait_for(lambda: kube_api.replicas() >= 1, what="the scale-up")
    assert_no_secret(ps(), "ps")
    server.stop()
    wait_for(lambda: 'api="redis"' in metrics(port), timeout=20, what="the Redis error to be counted")
    server.start()
    time.sleep(1)
    assert_no_secret(metrics(port), "the autoscaler's /metrics")
    autoscaler.signal(signal.SIGTERM)
    assert autoscaler.wait() == 0
    assert "autoscaler step failed" in autoscaler.output()
    assert_no_secret(autoscaler.output(), "the autoscaler's log")


def test_run_local_shows_no_password(
    server: SecretRedis, secret_env: dict[str, str], spawn: Callable[..., Proc]
) -> None:
    port = free_port()
    local = spawn(
        "task-producer",
        "run-local",
        "--jobs",
        "5",
        "--scale-down-delay",
        "0",
        "--keep-running",
        extra_env={**secret_env, "METRICS_PORT": str(port)},
    )
    wait_for(lambda: "Workers keep running" in local.output(), timeout=60, what="the demo to finish")
    assert_no_secret(ps(), "ps")
    assert_no_secret(metrics(port), "run-local's /metrics")
    local.signal(signal.SIGINT)
    local.wait(timeout=60)
    output = local.output()
    assert "Using Redis at redis://:***@127.0.0.1" in output
    assert_no_secret(output, "run-local's output")
    (logs,) = [line.split()[-1] for line in output.splitlines() if line.strip().startswith("worker logs")]
    assert_no_secret(Path(logs).read_text(), "run-local's worker logs")


def test_the_dashboard_shows_no_password(
    server: SecretRedis, secret_env: dict[str, str], spawn: Callable[..., Proc]
) -> None:
    """Neither in `ps` (the URL is no argument), nor in its pages (the instance list), nor in its log."""
    Producer(server.url()).enqueue("worker.examples.noop")
    login = {"RQ_DASHBOARD_USERNAME": "ops", "RQ_DASHBOARD_PASSWORD": "dash-pw"}
    urls = {
        "in the user information": server.url(),
        "as a query argument": f"redis://127.0.0.1:{server.port}/0?password={PASSWORD}",
        "refused": server.url(WRONG),
    }
    for case, url in urls.items():
        port = free_port()
        dashboard = spawn(
            "task-producer", "dashboard", "--port", str(port), extra_env={**secret_env, **login, "REDIS_URL": url}
        )
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: get(f"{base}/0/view/queues")[0] == 401, what="the dashboard")  # noqa: B023
        assert_no_secret(ps(), f"ps (dashboard, password {case})")
        for page in ("/0/view/queues", "/0/view/workers", "/0/data/queues.json"):
            status, body = get(base + page, "ops:dash-pw")
            assert status == 200 or (case == "refused" and status == 500), (case, page, status)
            assert_no_secret(body, f"the dashboard's {page} (password {case})")
        dashboard.signal(signal.SIGTERM)
        dashboard.wait()
        assert_no_secret(dashboard.output(), f"the dashboard's log (password {case})")


# --- who can reach /metrics ---------------------------------------------------------------------------------


def other_addresses() -> list[str]:
    """This machine's addresses beside 127.0.0.1: always 127.0.0.2 (all of 127/8 is loopback on Linux), and
    the one its default route leaves from, when there is one."""
    found = ["127.0.0.2"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent, the kernel only picks a source
            found.append(probe.getsockname()[0])
        except OSError:
            pass
    return [a for a in dict.fromkeys(found) if a != "127.0.0.1"]


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except OSError:
        return True


@pytest.mark.parametrize("command", [["task-worker"], ["task-producer", "run-local", "--keep-running"]])
def test_metrics_listen_on_loopback_only_by_default(spawn: Callable[..., Proc], command: list[str]) -> None:
    port = free_port()
    proc = spawn(*command, extra_env={"METRICS_PORT": str(port)})
    wait_for(lambda: metrics(port) or proc.popen.poll() is not None, timeout=30, what="/metrics on 127.0.0.1")
    assert "process_cpu_seconds_total" in metrics(port), proc.output()
    for address in other_addresses():
        assert refused(address, port), f"/metrics answers on {address}: METRICS_BIND is not honoured"
    # Ctrl-C, as a user stops it: run-local stops its own workers (a SIGKILL at teardown would orphan them).
    proc.signal(signal.SIGINT)
    proc.wait(timeout=60)


def test_metrics_bind_moves_the_listener(spawn: Callable[..., Proc]) -> None:
    port = free_port()
    proc = spawn("task-worker", extra_env={"METRICS_PORT": str(port), "METRICS_BIND": "127.0.0.2"})
    wait_for(lambda: metrics(port, "127.0.0.2") or proc.popen.poll() is not None, what="/metrics on 127.0.0.2")
    assert "process_cpu_seconds_total" in metrics(port, "127.0.0.2"), proc.output()
    assert refused("127.0.0.1", port)


@pytest.mark.parametrize(
    ("bind", "complaint"),
    [
        ("localhost", "METRICS_BIND='localhost' is not an IP address: use 127.0.0.1"),
        ("192.0.2.1", "METRICS_BIND=192.0.2.1: cannot listen there ([Errno 99] Cannot assign requested address)"),
    ],
)
@pytest.mark.parametrize("command", [["task-worker"], ["task-producer", "autoscale"], ["task-producer", "run-local"]])
def test_a_bad_metrics_bind_is_one_line_and_exit_2(
    env: dict[str, str], command: list[str], bind: str, complaint: str
) -> None:
    result = run(command, {**env, "METRICS_PORT": str(free_port()), "METRICS_BIND": bind}, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{command[0]}: error: {complaint}"), line
