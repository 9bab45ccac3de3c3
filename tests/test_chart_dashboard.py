"""The chart's dashboard (`dashboard:` in values): it asks for a login in every configuration, is read-only unless
`dashboard.readOnly=false`, has no value that turns the login off, and refuses to serve on an empty login Secret.
The dashboard command itself: tests/test_dashboard_views.py and tests/test_dashboard_access.py."""

from __future__ import annotations

import base64

import pytest

from producer.commands.redis_server import free_port
from tests.chart import CHART, VARIANTS, Helm, env_of, find, the_container
from tests.conftest import run

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
