"""The scaling results as a Markdown table, a summary of the targets, and one PNG per trace."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .run import TARGET_WAIT
from .sim import Sample

COLUMNS = (
    ("p50_wait_s", "p50 wait s", 1),
    ("p95_wait_s", "p95 wait s", 1),
    ("max_wait_s", "max wait s", 1),
    ("pod_seconds", "pod-seconds", 0),
    ("scale_changes", "scale changes", 0),
    ("pods_created", "Pods started", 0),
    ("busy_pods_killed", "busy Pods removed", 0),
    ("jobs_requeued", "jobs requeued", 0),
    ("jobs_lost", "jobs lost", 0),
)

TARGET_NAMES = {
    "ours_p95_wait_le_half_keda_or_lt_1s": "ours p95 wait <= 1/2 KEDA's (or < 1 s)",
    "ours_pod_seconds_le_keda": "ours pod-seconds <= KEDA's",
    "ours_no_busy_pods_removed": "ours (all three rows) removed no busy Pod",
    "no_jobs_lost": "no job lost (all policies)",
    "target_wait_p95_lt_target": f"ours-target-wait p95 < {TARGET_WAIT:g} s",
}


def _cell(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    head = "| trace | policy | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    rule = "|---|---|" + "--:|" * len(COLUMNS)
    rows = [head, rule]
    for trace, by_policy in results.items():
        for policy, m in by_policy.items():
            cells = " | ".join(_cell(m[key], digits) for key, _, digits in COLUMNS)
            rows.append(f"| {trace} | {policy} | {cells} |")
    return "\n".join(rows)


def targets_table(targets: dict[str, dict[str, bool]]) -> str:
    rows = ["| trace | target | holds |", "|---|---|---|"]
    for trace, checks in targets.items():
        rows.extend(f"| {trace} | {TARGET_NAMES.get(k, k)} | {'yes' if ok else 'NO'} |" for k, ok in checks.items())
    return "\n".join(rows)


def markdown(doc: dict[str, Any]) -> str:
    setup = doc["setup"]
    traces = "\n".join(f"- `{name}`: {t['summary']} ({t['jobs']:,} jobs)" for name, t in doc["trace_info"].items())
    return "\n\n".join(
        [
            f"Simulated {doc['generated']}{' (--quick)' if doc['quick'] else ''}: cap {setup['maximum']} Pods "
            f"for every policy, one job per Pod, Pod start {setup['start_delay'][0]:g}-{setup['start_delay'][1]:g} s "
            f"(seeded, same draws for every policy), grace period {setup['grace_period']:g} s, our loop every "
            f"{setup['interval']:g} s with the production defaults (min {setup['ours']['minimum']}, "
            f"jobs per worker {setup['ours']['jobs_per_worker']}, scale-down delay "
            f"{setup['ours']['scale_down_delay']:g} s, target wait {setup['ours']['target_wait']:g} s); "
            f"`ours-target-wait` sets the target to {setup['ours_target_wait']:g} s, `ours-count-only` turns it off; "
            f"{doc['seconds']:.0f} s to simulate.",
            traces,
            table(doc["traces"]),
            targets_table(doc["targets"]),
        ]
    )


def summary(targets: dict[str, dict[str, bool]]) -> str:
    lines = []
    for trace, checks in targets.items():
        failed = [TARGET_NAMES.get(k, k) for k, ok in checks.items() if not ok]
        lines.append(f"{trace:<11} {'all targets hold' if not failed else 'FAILS: ' + '; '.join(failed)}")
    return "\n".join(lines)


def plots(series: dict[str, dict[str, list[Sample]]], out: Path) -> list[Path]:
    """One PNG per trace (queue depth and replicas over time, per policy); [] without matplotlib."""
    try:  # optional: only the bench extra has it (imported by name so the dev venv's mypy need not see it)
        importlib.import_module("matplotlib").use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return []
    written = []
    for trace, by_policy in series.items():
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
        for policy, samples in by_policy.items():
            minutes = [s.at / 60 for s in samples]
            top.plot(minutes, [s.queued for s in samples], label=policy, linewidth=1)
            bottom.step(minutes, [s.replicas for s in samples], where="post", label=policy, linewidth=1)
        top.set_ylabel("queued jobs")
        top.set_title(f"{trace}: queue depth and replicas asked for")
        top.legend(loc="upper right", fontsize="small")
        bottom.set_ylabel("replicas")
        bottom.set_xlabel("minutes")
        fig.tight_layout()
        path = out / f"scaling-{trace}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
