"""What the dashboard tests share (tests/test_dashboard_views.py, tests/test_dashboard_access.py, and
tests/test_sentinel.py): reading the dashboard's JSON, knowing when it answers, and the ``dashboard`` fixture that
starts a dashboard command on a free port. A test module that uses the fixture imports ``dashboard_fixture``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from producer.commands.redis_server import free_port
from tests.conftest import Proc, wait_for


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


@pytest.fixture(name="dashboard")
def dashboard_fixture(spawn: Callable[..., Proc]) -> Dashboard:
    """Start a dashboard command on a free port; returns its base URL once it answers."""

    def start(*command: str) -> str:
        port = free_port()
        proc = spawn(*command, "--bind", "127.0.0.1", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answering(f"{base}/0/data/queues.json") or proc.popen.poll() is not None, what="dashboard")
        assert proc.popen.poll() is None, proc.output()
        return base

    return start
