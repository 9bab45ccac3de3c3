"""Periodic tasks in the chart (`cron:` in values): JSON lines in a ConfigMap, mounted read-only into the autoscaler,
which TASK_CRON points at; nothing without entries; the schema and the chart refusing bad entries; and the
autoscaler's Redis user allowed what firing them takes, on a real redis-server with the rendered ACL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from producer.scaling.cron import Cron, load, run_id
from task_processor import keys
from task_processor.connection import connect
from task_processor.settings import Settings
from tests.acl import AclRedis, cli, nothing_refused, refused
from tests.chart import CHART, Helm, env_of, find, kubernetes_validate, the_container
from tests.chart_checks import KUBE_VERSIONS, security_problems
from tests.conftest import TASK_MODULES
from tests.cron import Clock, at

ENTRIES: list[dict[str, Any]] = [
    {"name": "nightly-report", "cron": "0 3 * * *", "func": "worker.examples.add", "args": [7, 1], "retries": 2},
    {"cron": "@hourly", "func": "worker.examples.noop", "queue": "low", "kwargs": {}, "meta": {"by": "cron"}},
]


def with_cron(entries: list[dict[str, Any]]) -> tuple[str, ...]:
    return ("--set-json", f"cron={json.dumps(entries)}")


def producer_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    template: dict[str, Any] = find(docs, "Deployment", "task-processor-producer")["spec"]["template"]
    return template


def test_no_entries_render_nothing_for_them(helm: Helm) -> None:
    docs = helm.docs()
    assert not [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "task-processor-cron"]
    pod = producer_pod(docs)
    assert "TASK_CRON" not in env_of(the_container(docs, "Deployment", "task-processor-producer"))
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["tmp"]
    assert "checksum/cron" not in pod["metadata"].get("annotations", {})


def test_the_entries_are_the_json_lines_the_autoscaler_reads(helm: Helm, tmp_path: Path) -> None:
    docs = helm.docs(extra=with_cron(ENTRIES))
    data = find(docs, "ConfigMap", "task-processor-cron")["data"]
    assert list(data) == ["cron.jsonl"]
    lines = data["cron.jsonl"].splitlines()
    assert [json.loads(line) for line in lines] == ENTRIES, "one entry a line, each as given"
    path = tmp_path / "cron.jsonl"
    path.write_text(data["cron.jsonl"])
    entries = load(Settings(cron_file=str(path), task_modules=(TASK_MODULES,)))
    assert [(e.name, e.schedule, e.queue, e.line) for e in entries] == [
        ("nightly-report", "0 3 * * *", "default", 1),
        (entries[1].name, "@hourly", "low", 2),
    ]


def test_the_autoscaler_mounts_them_read_only_and_task_cron_names_the_file(helm: Helm) -> None:
    docs = helm.docs(extra=with_cron(ENTRIES))
    pod = producer_pod(docs)
    container = the_container(docs, "Deployment", "task-processor-producer")
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "cron"]
    assert volume["configMap"]["name"] == "task-processor-cron"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "cron"]
    assert mount["readOnly"] is True
    assert env_of(container)["TASK_CRON"]["value"] == f"{mount['mountPath']}/cron.jsonl"
    # The file is read at start-up: a change of the entries rolls the autoscaler's Pods.
    checksum = pod["metadata"]["annotations"]["checksum/cron"]
    assert producer_pod(helm.docs(extra=with_cron(ENTRIES)))["metadata"]["annotations"]["checksum/cron"] == checksum
    changed = producer_pod(helm.docs(extra=with_cron(ENTRIES[:1])))["metadata"]["annotations"]["checksum/cron"]
    assert changed != checksum
    assert "TASK_CRON" not in env_of(the_container(docs, "Deployment", "task-processor")), "workers do not fire them"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_a_render_with_entries_passes_lint_the_kubernetes_schemas_and_the_pod_checks(
    helm: Helm, kube_version: str
) -> None:
    lint = helm.run("lint", "--strict", str(CHART), *with_cron(ENTRIES))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = helm.template(extra=(*with_cron(ENTRIES), "--kube-version", kube_version))
    result = kubernetes_validate(rendered, kube_version)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not security_problems([d for d in yaml.safe_load_all(rendered) if d])


GOOD = {"cron": "@daily", "func": "worker.examples.noop"}


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ({"func": "worker.examples.noop"}, "missing property 'cron'"),
        ({"cron": "@daily"}, "missing property 'func'"),
        (GOOD | {"when": "now"}, "'when'"),
        (GOOD | {"job_id": "x"}, "'job_id'"),
        (GOOD | {"depends_on": "x"}, "'depends_on'"),
        (GOOD | {"on_success": "print"}, "/cron/0/on_success"),
        (GOOD | {"cron": "* * * * * *"}, "/cron/0/cron"),
        (GOOD | {"cron": "@reboot"}, "/cron/0/cron"),
        (GOOD | {"name": "a b"}, "/cron/0/name"),
        (GOOD | {"func": "noop"}, "/cron/0/func"),
        (GOOD | {"queue": "bad:name"}, "/cron/0/queue"),
        (GOOD | {"timeout": 0}, "/cron/0/timeout"),
        (GOOD | {"args": "x"}, "/cron/0/args"),
    ],
)
def test_the_schema_refuses_a_bad_entry(helm: Helm, entry: dict[str, Any], complaint: str) -> None:
    result = helm.run("template", "x", str(CHART), *with_cron([entry]))
    assert result.returncode != 0, f"helm accepted {entry}"
    assert complaint in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ((*with_cron([GOOD | {"name": "a"}, GOOD | {"name": "a"}]),), 'cron[1].name "a" is also the name of cron[0]'),
        ((*with_cron([GOOD]), "--set", "autoscale.enabled=false"), "set autoscale.enabled=true, or empty cron"),
    ],
)
def test_the_chart_refuses_duplicate_names_and_entries_without_the_autoscaler(
    helm: Helm, settings: tuple[str, ...], complaint: str
) -> None:
    result = helm.run("template", "x", str(CHART), *settings)
    assert result.returncode != 0, f"helm accepted {settings}"
    assert complaint in result.stderr, result.stderr


def test_the_autoscaler_user_may_fire_periodic_tasks_and_nothing_more(helm: Helm, tmp_path: Path) -> None:
    """As the rendered ACL's autoscaler user: the start of an entry, its run, the published schedule, with nothing
    refused; producers (and `task-producer status`) read the schedule; no one else writes what the autoscaler keeps,
    and the autoscaler writes no other key of ours."""
    acl = AclRedis(helm.docs(extra=with_cron(ENTRIES)), tmp_path)
    try:
        path = tmp_path / "cron.jsonl"
        path.write_text("\n".join(json.dumps(entry) for entry in ENTRIES) + "\n")
        settings = Settings(redis_url=acl.url("autoscaler"), task_modules=(TASK_MODULES,), cron_file=str(path))
        clock = Clock("2026-12-02T02:59:30")
        cron = Cron(connect(settings.redis_url), load(settings), settings, clock=clock)
        cron.tick()
        clock.set("2026-12-02T03:00:00")
        cron.tick()
        job_id = run_id("nightly-report", at("2026-12-02T03:00:00"))
        assert acl.admin.lrange(keys.queue("default"), 0, -1) == [job_id.encode()]
        assert cron.handled["nightly-report"].last_job_id == job_id
        nothing_refused(acl)
        status = json.loads(cli(acl.url("producer"), "task-producer", "status", "--json").stdout)
        assert status["cron"]["nightly-report"]["last_job_id"] == job_id
        nothing_refused(acl)
        autoscaler, producer = acl.client("autoscaler"), acl.client("producer")
        assert refused(autoscaler, "SET", "task-processor:cron:other", "1")
        assert refused(autoscaler, "HSET", "task-processor:cron:ticks-2", "a", "1")
        assert refused(producer, "HGETALL", keys.CRON_TICKS)
        assert refused(producer, "HSET", keys.CRON_TICKS, "nightly-report", "{}")
        assert refused(producer, "DEL", keys.CRON_STATUS)
        for role in ("worker", "dashboard"):
            assert refused(acl.client(role), "HSET", keys.CRON_TICKS, "nightly-report", "{}"), role
    finally:
        acl.close()
