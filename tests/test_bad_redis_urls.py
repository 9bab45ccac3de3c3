"""Bad input, wrong password, TLS and bad Redis URLs: against a dedicated password-protected redis-server, every
command (``task-producer status`` and ``enqueue``, ``task-worker``) and the API gives ONE line that shows the URL
with its password masked and says what to fix, within a deadline (no hang), and writes nothing; a refused password
fails the worker's probe.

The other kinds of bad input, and what these modules share: tests/bad_input.py.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from producer import Producer, RedisUnavailableError
from producer.commands.redis_server import LocalRedisServer, free_port
from tests.bad_input import one_error_line, run_all, snapshot
from tests.conftest import run

PASSWORD = "s3cret-pw"
WRONG = "wrong-pw-77"
DEADLINE = 60.0
"""Seconds after which a command still running counts as hung: generous, only a hang reaches it."""


@pytest.fixture
def auth_redis() -> Any:
    """A dedicated redis-server that requires PASSWORD."""
    with LocalRedisServer(appendonly=False) as server:
        redis.Redis(port=server.port).config_set("requirepass", PASSWORD)
        yield server


@dataclass(frozen=True)
class BadUrl:
    url: str  # {port}: the password-protected server; {closed}: a port nothing listens on
    shown: str  # the URL as every message must show it
    fix: str  # regex: what the line must say to fix


BAD_URLS = [
    pytest.param(
        BadUrl(
            f"redis://:{WRONG}@127.0.0.1:{{port}}/0",
            "redis://:***@127.0.0.1:{port}/0",
            r"refused the credentials: fix the password in REDIS_URL",
        ),
        id="wrong-password",
    ),
    pytest.param(
        BadUrl(
            "redis://127.0.0.1:{port}/0",
            "redis://127.0.0.1:{port}/0",
            r"refused the credentials: fix the password in REDIS_URL",
        ),
        id="missing-password",
    ),
    pytest.param(
        BadUrl(
            f"rediss://:{PASSWORD}@127.0.0.1:{{closed}}/0",
            "rediss://:***@127.0.0.1:{closed}/0",
            r"cannot reach Redis at .*: start redis-server there or point REDIS_URL at one",
        ),
        id="tls-closed-port",
    ),
    pytest.param(
        BadUrl(
            f"rediss://:{PASSWORD}@127.0.0.1:{{port}}/0",
            "rediss://:***@127.0.0.1:{port}/0",
            r"(TLS|SSL).*(redis://|not)",
        ),
        id="tls-to-plain-server",
    ),
    pytest.param(
        BadUrl(
            f"redis://:{PASSWORD}@127.0.0.1:notaport/0",
            "redis://:***@127.0.0.1:notaport/0",
            r"malformed.*fix REDIS_URL",
        ),
        id="port-not-a-number",
    ),
    pytest.param(
        BadUrl(
            f"redis://:{PASSWORD}@[::1]:{{closed}}/0",
            "redis://:***@[::1]:{closed}/0",
            r"cannot reach Redis",
        ),
        id="ipv6-host",
    ),
    pytest.param(
        BadUrl(
            f"redis://:{PASSWORD}@127.0.0.1:{{port}}/99",
            "redis://:***@127.0.0.1:{port}/99",
            r"DB index is out of range.*(database|db|/99)",
        ),
        id="db-out-of-range",
    ),
]


def test_the_probe_fails_on_refused_credentials(auth_redis: LocalRedisServer, env: dict[str, str]) -> None:
    """Unlike an outage (the probe passes: a restart cannot fix Redis), a refused password fails it: a restarted
    container reads the Secret again, which is how a rotated password reaches the workers."""
    result = run(["task-worker", "check"], {**env, "REDIS_URL": f"redis://:{WRONG}@127.0.0.1:{auth_redis.port}/0"})
    assert result.returncode != 0
    assert "refused the credentials" in one_error_line(result.stderr, "task-worker")
    assert WRONG not in result.stdout + result.stderr


@pytest.mark.timeout(DEADLINE + 30)
@pytest.mark.parametrize("bad", BAD_URLS)
def test_bad_redis_url_is_one_masked_line_from_every_command(
    auth_redis: LocalRedisServer, env: dict[str, str], tmp_path: Path, bad: BadUrl
) -> None:
    closed = free_port()
    url = bad.url.format(port=auth_redis.port, closed=closed)
    shown = bad.shown.format(port=auth_redis.port, closed=closed)
    admin = redis.Redis(port=auth_redis.port, password=PASSWORD)
    before = snapshot(admin)

    api_error: list[BaseException] = []

    def call_api() -> None:
        try:
            Producer(url).enqueue("worker.examples.noop")
        except BaseException as exc:
            api_error.append(exc)

    api = threading.Thread(target=call_api, daemon=True)
    api.start()
    results = run_all(
        [["task-producer", "status"], ["task-producer", "enqueue", "worker.examples.noop"], ["task-worker", "--burst"]],
        {**env, "REDIS_URL": url},
        tmp_path,
        timeout=DEADLINE,
    )
    api.join(timeout=max(0.1, DEADLINE - max(r.seconds for r in results)))

    for result in results:
        assert result.returncode is not None, f"{result.args} still running after {DEADLINE}s"
        assert result.returncode == 1, (result.args, result.returncode, result.stderr)
        line = one_error_line(result.stderr, result.args[0])
        assert PASSWORD not in result.stdout + result.stderr
        assert WRONG not in result.stdout + result.stderr
        assert shown in line, line
        assert re.search(bad.fix, line), line
    assert not api.is_alive(), f"Producer.enqueue still blocked after {DEADLINE}s"
    assert len(api_error) == 1
    assert isinstance(api_error[0], RedisUnavailableError), repr(api_error[0])
    message = str(api_error[0])
    assert "\n" not in message
    assert PASSWORD not in message
    assert WRONG not in message
    assert shown in message, message
    assert snapshot(admin) == before
