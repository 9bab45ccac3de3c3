"""The results as a markdown table with ratios to plain RQ, the issue's targets checked, and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

OURS, RQ, RAW = "task-processor", "RQ SimpleWorker", "raw redis-py (RPUSH/BLMOVE)"


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else "-"


def _num(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


FLEET = "2 processes --concurrency"
"""Our fleets the Dramatiq target compares (the best of them: the target leaves the number of slots open)."""


def _targets(f: dict[str, Any], depths: list[int]) -> list[tuple[str, str, bool]]:
    fleets = {key.split("|drain:")[1]: rate for key, rate in f.items() if key.startswith(f"{OURS}|drain:{FLEET}")}
    fleet, ours_fleet = max(fleets.items(), key=lambda item: item[1])
    dramatiq = f["Dramatiq|drain:default (2x8)"]
    process, sends = f[f"{OURS}|pair:drain"], f[f"{OURS}|pair:enqueue"]  # medians of back-to-back pairs
    shallow, deep = (f[f"{OURS}|depth:{d}"] for d in depths)
    one = f[f"{OURS}|drain:1 process"] / f[f"{RQ}|drain:1 process"]
    single = f[f"{OURS}|enqueue"] / f[f"{RQ}|enqueue"]
    batch = f[f"{OURS}|enqueue_batch"] / f[f"{RQ}|enqueue_batch"]
    p50, rq_p50, raw_p50 = (f[f"{name}|latency"][0] for name in (OURS, RQ, RAW))
    # To the byte: below that, the difference is the allocator's, not the data's.
    size, rq_size = round(f[f"{OURS}|bytes"]), round(f[f"{RQ}|bytes"])
    return [
        ("one task-worker process >= 3x RQ SimpleWorker", f"{one:.2f}x", one >= 3),
        (
            "2 processes with --concurrency >= Dramatiq default",
            f"{fleet}: {ours_fleet:,.0f} vs {dramatiq:,.0f}/s ({ours_fleet / dramatiq:.2f}x)",
            ours_fleet >= dramatiq,
        ),
        ("one task-worker process >= 1.0x the tuned Dramatiq process (paired)", f"{process:.2f}x", process >= 1.0),
        ("enqueue one by one >= 1.5x RQ", f"{single:.2f}x", single >= 1.5),
        ("enqueue one by one >= 1.0x Dramatiq's send() (paired)", f"{sends:.2f}x", sends >= 1.0),
        ("enqueue_many >= 1.5x RQ", f"{batch:.2f}x", batch >= 1.5),
        ("enqueue->start p50 <= RQ SimpleWorker's", f"{p50:.2f} vs {rq_p50:.2f} ms", p50 <= rq_p50),
        ("enqueue->start p50 with an idle worker <= 1 ms", f"{p50:.2f} ms (raw loop {raw_p50:.2f} ms)", p50 <= 1),
        ("Redis bytes per queued task <= RQ's (to the byte)", f"{size:,} vs {rq_size:,} B", size <= rq_size),
        (
            f"drain at {depths[1]:,} queued within 10% of {depths[0]:,}",
            f"{deep:,.0f} vs {shallow:,.0f}/s ({deep / shallow - 1:+.1%})",
            deep >= 0.9 * shallow,
        ),
    ]


def markdown(results: dict[str, Any]) -> str:
    f, m = results["figures"], results["machine"]
    names = list(dict.fromkeys(key.split("|")[0] for key in f))
    lines = [
        f"Measured {m['date']} on {m['cpus']} CPUs ({m['cpu']}), Redis {m['redis']} on loopback (no persistence), "
        f"Python {m['python']}; load average at start {m['load_average_at_start']:.2f}; medians of "
        f"{results['repeat']}{' (--quick)' if results['quick'] else ''}; {results.get('seconds', '?')} s in all. "
        "No-op tasks. Ratios are to plain RQ measured in the same run.",
        "",
        "| system | enqueue 1 by 1 /s | x RQ | enqueue batch /s | x RQ | enqueue->start p50 / p99 ms "
        "| Redis bytes per queued task |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name in names:
        latency = f[f"{name}|latency"]
        lines.append(
            f"| {name} | {_num(f[f'{name}|enqueue'])} | {_ratio(f[f'{name}|enqueue'], f[f'{RQ}|enqueue'])} "
            f"| {_num(f[f'{name}|enqueue_batch'])} | {_ratio(f[f'{name}|enqueue_batch'], f[f'{RQ}|enqueue_batch'])} "
            f"| {latency[0]:.2f} / {latency[1]:.2f} | {_num(f[f'{name}|bytes'])} |"
        )
    lines += ["", "| system | workers | drain tasks/s | x RQ SimpleWorker (1 process) |", "|---|---|--:|--:|"]
    base = f[f"{RQ}|drain:1 process"]
    for key, rate in f.items():
        name, what = key.split("|")
        if what.startswith("drain:"):
            lines.append(f"| {name} | {what.removeprefix('drain:')} | {_num(rate)} | {_ratio(rate, base)} |")
    depths = results["depths"]
    lines += ["", "| one task-worker process | pop rate /s |", "|---|--:|"]
    lines += [f"| {d:,} queued | {_num(f[f'{OURS}|depth:{d}'])} |" for d in depths]
    lines += ["", "| target | measured | holds |", "|---|---|---|"]
    lines += [f"| {what} | {value} | {'yes' if ok else '**no**'} |" for what, value, ok in _targets(f, depths)]
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = results["figures"]
    drains = [(k.replace("|drain:", "\n"), v) for k, v in f.items() if "|drain:" in k]
    figure, (left, right) = plt.subplots(1, 2, figsize=(15, 7), gridspec_kw={"width_ratios": [3, 1]})
    colors = ["tab:green" if label.startswith(OURS) else "tab:gray" for label, _ in drains]
    left.barh([label for label, _ in drains], [v for _, v in drains], color=colors)
    left.invert_yaxis()
    left.set_xscale("log")
    left.set_xlabel("no-op tasks drained per second (log scale)")
    left.set_title("Drain rate")
    left.tick_params(axis="y", labelsize=7)
    names = list(dict.fromkeys(k.split("|")[0] for k in f))
    enqueue = [(n, f[f"{n}|enqueue"]) for n in names]
    right.barh(
        [n for n, _ in enqueue],
        [v for _, v in enqueue],
        color=["tab:green" if n == OURS else "tab:gray" for n, _ in enqueue],
    )
    right.invert_yaxis()
    right.set_xlabel("tasks enqueued per second, one by one")
    right.set_title("Enqueue rate")
    right.tick_params(axis="y", labelsize=7)
    figure.suptitle(
        f"task-processor vs RQ, Celery, Dramatiq ({results['machine']['cpus']} CPUs, {results['machine']['date']})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
