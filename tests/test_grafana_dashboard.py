"""The Grafana dashboard the chart ships (grafanaDashboard.*, charts/task-processor/dashboards/task-processor.json).

What is checked: the ConfigMap is off by default and, once on, is one object carrying the sidecar label, the
annotations and the dashboard file's JSON, accepted by helm lint and the Kubernetes schemas (the checks of
tests/test_chart.py, reused); every query names only metrics, and labels, that the autoscaler's and the
workers' own registries export, so a renamed metric or label fails here rather than as an empty panel; every
panel has a unique id, a title, and the ${datasource} variable as its data source.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rq.job import Job, JobStatus

from producer import Producer
from producer.scaling import metrics as scaling_metrics
from producer.scaling.rates import Rates
from producer.scaling.report import LoopState
from task_processor.observe import QueueCounts
from tests import test_chart
from tests.chart import ALL_ON, CHART, VARIANTS, Helm, find
from tests.chart_checks import KUBE_VERSIONS
from worker import metrics as worker_metrics

DASHBOARD_FILE = CHART / "dashboards" / "task-processor.json"
DATA_KEY = "task-processor.json"
CONFIGMAP = "task-processor-grafana-dashboard"
ON = ("grafanaDashboard.enabled=true",)
SIDECAR_LABEL = ("grafana_dashboard", "1")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

Exported = dict[str, frozenset[str]]
"""Every sample name a registry exports (a counter's ``_total``, a histogram's ``_bucket``, ...) -> its labels."""


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def dashboard_configmaps(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ConfigMaps holding the dashboard, or carrying the sidecar's label (whichever way one went astray)."""
    key, value = SIDECAR_LABEL
    return [
        d
        for d in docs
        if d["kind"] == "ConfigMap"
        and (DATA_KEY in d.get("data", {}) or d["metadata"].get("labels", {}).get(key) == value)
    ]


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and those a collapsed row keeps inside it."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


# --- the ConfigMap ------------------------------------------------------------------------------------------------


def test_no_dashboard_by_default(helm: Helm) -> None:
    assert not dashboard_configmaps(helm.docs())
    assert not dashboard_configmaps(helm.docs(*ALL_ON)), "metrics alone must not bring the dashboard"


def test_on_one_configmap_carries_the_label_the_annotations_and_the_dashboard(helm: Helm) -> None:
    docs = helm.docs(*ON, "grafanaDashboard.annotations.grafana_folder=Task processor")
    configmap = find(docs, "ConfigMap", CONFIGMAP)
    assert dashboard_configmaps(docs) == [configmap]
    metadata = configmap["metadata"]
    assert metadata["labels"][SIDECAR_LABEL[0]] == SIDECAR_LABEL[1]
    assert metadata["labels"]["app.kubernetes.io/instance"] == "task-processor", "the release's own labels stay"
    assert metadata["annotations"] == {"grafana_folder": "Task processor"}
    assert list(configmap["data"]) == [DATA_KEY]
    # Exactly the file, parsed: nothing in it was taken for a template ({{pool}} legends, ${datasource}).
    assert json.loads(configmap["data"][DATA_KEY]) == json.loads(DASHBOARD_FILE.read_text())
    assert "annotations" not in find(helm.docs(*ON), "ConfigMap", CONFIGMAP)["metadata"], "none by default"


def test_the_sidecar_label_is_the_users_choice(helm: Helm) -> None:
    """A Grafana whose sidecar watches another label: the default one can be dropped, another set."""
    docs = helm.docs(*ON, "grafanaDashboard.labels.grafana_dashboard=null", "grafanaDashboard.labels.dashboards=tp")
    labels = find(docs, "ConfigMap", CONFIGMAP)["metadata"]["labels"]
    assert labels["dashboards"] == "tp"
    assert SIDECAR_LABEL[0] not in labels


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_the_configmap_passes_lint_and_the_kubernetes_schema(
    helm: Helm, kube_version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tests/test_chart.py's own checks, run on a variant with the dashboard on (and the metrics it reads)."""
    monkeypatch.setitem(VARIANTS, "grafana-dashboard", (*ALL_ON, *ON, "grafanaDashboard.annotations.folder=Queues"))
    test_chart.test_helm_lint_strict(helm, "grafana-dashboard")
    test_chart.test_rendered_objects_match_the_kubernetes_schema(helm, "grafana-dashboard", kube_version)


# --- the queries name what the processes export ---------------------------------------------------------------------


@pytest.fixture
def exported(producer: Producer, conn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Exported:
    """What the autoscaler's and the workers' registries export, after every metric was set through the functions
    the processes call (a labelled metric has no sample until it is given label values)."""
    scaling_metrics.observed(
        "default",
        {"default": QueueCounts(queued=3, started=1)},
        2,
        {"default": 4.0},
        Rates(arrival={"default": 0.5}, service=2.0),
    )
    scaling_metrics.desired("default", 3)
    scaling_metrics.state("default", LoopState.ACTIVE)
    scaling_metrics.scaled("default", 2, 3, "scale-up")
    scaling_metrics.failed(redis.ConnectionError("refused"))

    monkeypatch.setattr(worker_metrics, "_counting", True)  # as `serve` leaves it when METRICS_PORT is set
    job = Job.fetch(producer.enqueue("worker.examples.add", 1, 2).id, connection=conn, serializer="json")
    # One run per outcome: job_ended picks the counter from the status the job ended in.
    for status in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.QUEUED):
        worker_metrics.job_started(job)
        job.set_status(status)
        worker_metrics.job_ended(job, 0.2)

    names: dict[str, set[str]] = {}
    for registry in (scaling_metrics.REGISTRY, worker_metrics.REGISTRY):
        for family in registry.collect():
            for sample in family.samples:
                names.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in names.items()}


STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'")
MATCHERS = re.compile(r"\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
RANGE = re.compile(r"\[[^\]]*\]")
# A name not called as a function, nor part of a number, a duration or a $variable: a metric.
IDENTIFIER = re.compile(r"(?<![\w$.:])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()")
KEYWORDS = {"bool", "offset", "and", "or", "unless", "inf", "nan"}
LABEL_VALUES = re.compile(r"\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*")


def names_in(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names (selectors and grouping clauses) of a PromQL expression."""
    expr = STRING.sub('""', expr)  # label values are free; what is in them must not read as names
    labels = {label for block in MATCHERS.findall(expr) for label in MATCHER_LABEL.findall(block)}
    expr = MATCHERS.sub(" ", expr)
    labels |= {label.strip() for clause in GROUPING.findall(expr) for label in clause.split(",") if label.strip()}
    expr = RANGE.sub(" ", GROUPING.sub(" ", expr))
    metrics = {name for name in IDENTIFIER.findall(expr) if name.lower() not in KEYWORDS}
    return metrics, labels


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, set[str]]]:
    """(where, PromQL expression, labels it needs beyond its own) of every panel target and query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} query {target['refId']}", target["expr"], set()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        where = f"variable {variable['name']!r}"
        # label_values(metric, label) is Grafana's, not PromQL: the label must be on that metric.
        match = LABEL_VALUES.fullmatch(query)
        yield (where, match[1], {match[2]}) if match else (where, query, set())


def query_problems(dashboard: dict[str, Any], exported: Exported) -> list[str]:
    """A line per metric no registry exports and per label the metrics of its expression do not all carry. A
    label is held to every metric its expression names, which is exact while each query names one metric, as
    every query here does; one joining several metrics on different labels would need a finer reading."""
    problems = []
    for where, expr, needed in queries(dashboard):
        metrics, labels = names_in(expr)
        if not metrics:
            problems.append(f"{where}: {expr!r} names no metric")
        for metric in sorted(metrics):
            if metric not in exported:
                problems.append(f"{where}: metric {metric} is exported by no registry")
                continue
            for label in sorted((labels | needed) - exported[metric]):
                problems.append(f"{where}: label {label} is not on {metric} (it has {sorted(exported[metric])})")
    return problems


def test_every_query_names_exported_metrics_and_their_labels(dashboard: dict[str, Any], exported: Exported) -> None:
    problems = query_problems(dashboard, exported)
    assert not problems, "queries that would come back empty:\n" + "\n".join(problems)
    named = {metric for _, expr, _ in queries(dashboard) for metric in names_in(expr)[0]}
    # Every metric of ours is on the dashboard: a new one should get a panel, or a reason here not to.
    ours = {name for name in exported if name.startswith("task_processor_")}
    shown = {name for name in ours if name in named or name.endswith(("_sum", "_count"))}
    assert ours == shown, f"not on the dashboard: {sorted(ours - shown)}"


def doctored(dashboard: dict[str, Any], where: str, old: str, new: str) -> dict[str, Any]:
    """A copy with ``old`` replaced by ``new`` in the queries of one panel (every target) or variable."""
    copied = copy.deepcopy(dashboard)
    replaced = 0
    for panel in panels(copied):
        for target in panel.get("targets", []) if f"panel {panel['title']!r}" == where else []:
            replaced += old in target["expr"]
            target["expr"] = target["expr"].replace(old, new)
    for variable in copied["templating"]["list"]:
        if f"variable {variable['name']!r}" == where:
            replaced += old in variable["query"]["query"]
            variable["query"]["query"] = variable["query"]["query"].replace(old, new)
    assert replaced, f"{old!r} is not in the queries of {where}: the case tests nothing"
    return copied


@pytest.mark.parametrize(
    ("where", "old", "new", "named"),
    [
        ("panel 'Queue depth'", "_queue_depth{", "_queue_dpeth{", "task_processor_queue_dpeth"),
        ("panel 'Busy worker slots'", "task_processor_", "task_procesor_", "task_procesor_worker_busy"),
        ("panel 'Oldest job age'", "by (queue)", "by (queues)", "label queues"),
        ("panel 'Queue depth'", 'queue=~"$queue"', 'pool=~"$pool"', "label pool is not on task_processor_queue_depth"),
        ("panel 'Job duration'", "_bucket{", "_count{", "label le is not on task_processor_job_duration_seconds_count"),
        ("variable 'pool'", "desired, pool)", "desired, pools)", "label pools"),
    ],
    ids=["metric", "prefix", "by-label", "label-of-another-metric", "le-off-buckets", "variable"],
)
def test_the_query_check_names_a_typo(
    dashboard: dict[str, Any], exported: Exported, where: str, old: str, new: str, named: str
) -> None:
    problems = query_problems(doctored(dashboard, where, old, new), exported)
    assert any(p.startswith(where) and named in p for p in problems), f"{new!r} went unnoticed: {problems}"


# --- panels and variables --------------------------------------------------------------------------------------------


def test_each_panel_has_a_unique_id_a_title_and_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert all(isinstance(i, int) for i in ids), f"panel ids not all integers: {ids}"
    assert len(ids) == len(set(ids)), f"panel ids not unique: {ids}"
    for panel in panels(dashboard):
        assert panel.get("title"), f"panel {panel['id']} has no title"
        where = f"panel {panel['title']!r}"
        if panel["type"] == "row":
            assert not panel.get("targets"), f"{where}: a row queries nothing"
            continue
        assert panel["datasource"] == DATASOURCE, where
        assert panel["targets"], f"{where} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, f"{where}, target {target['refId']}"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{where}: refIds {refs}"


def test_the_variables_pick_a_prometheus_then_pools_and_queues(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "pool", "queue"], "pool and queue need the data source above them"
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    for name, metric in (("pool", "task_processor_replicas_desired"), ("queue", "task_processor_queue_depth")):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["query"]["query"] == f"label_values({metric}, {name})"
        assert (variable["multi"], variable["includeAll"]) == (True, True), name
