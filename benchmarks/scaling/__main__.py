"""python -m benchmarks.scaling [--quick] [--json PATH] [--out DIR]: simulate the autoscalers on seeded traces.

Writes scaling.json, scaling.md and scaling-<trace>.png (with matplotlib) to DIR (benchmarks/results) and
prints the table and whether the targets hold. Always exits 0: it is a report, not a gate.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import report
from .run import POLICIES, Setup, check_targets, simulate
from .sim import Sample, SimConfig
from .traces import MAKERS, make

RESULTS = Path(__file__).resolve().parent.parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="traces a quarter as long (for development)")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default: DIR/scaling.json)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output directory (default: benchmarks/results)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the traces (Pod start delays: --seed too)")
    parser.add_argument("--interval", type=float, default=Setup.interval, help="our loop's period in seconds")
    parser.add_argument("--trace", action="append", choices=sorted(MAKERS), help="only these traces")
    args = parser.parse_args(argv)

    setup = Setup(interval=args.interval, sim=SimConfig(seed=args.seed))
    started = time.monotonic()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    series: dict[str, dict[str, list[Sample]]] = {}
    trace_info: dict[str, dict[str, Any]] = {}
    for name in args.trace or list(MAKERS):
        trace = make(name, args.quick, args.seed)
        trace_info[name] = {"summary": trace.summary, "jobs": len(trace.jobs), "horizon_s": trace.horizon}
        results[name], series[name] = {}, {}
        for policy in POLICIES:
            t0 = time.monotonic()
            outcome = simulate(trace, policy, setup)
            outcome.metrics["sim_seconds"] = round(time.monotonic() - t0, 2)
            results[name][policy], series[name][policy] = outcome.metrics, outcome.samples
            m = outcome.metrics
            print(
                f"{name:<11} {policy:<17} p50 {m['p50_wait_s']:8.1f}  p95 {m['p95_wait_s']:8.1f}  "
                f"max {m['max_wait_s']:8.1f} s  pod-s {m['pod_seconds']:10,.0f}  changes {m['scale_changes']:4}  "
                f"busy removed {m['busy_pods_killed']:3}  requeued {m['jobs_requeued']:3}  ({m['sim_seconds']:.1f} s)",
                flush=True,
            )
    targets = check_targets(results)
    ours = setup.bounds("ours")
    doc: dict[str, Any] = {
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "setup": {
            "maximum": setup.maximum,
            "interval": setup.interval,
            "start_delay": list(setup.sim.start_delay),
            "grace_period": setup.sim.grace_period,
            "seed": args.seed,
            "pod_concurrency": 1,
            "ours": asdict(ours),
            "ours_target_wait": setup.bounds("ours-target-wait").target_wait,
        },
        "trace_info": trace_info,
        "traces": results,
        "targets": targets,
        "all_targets_hold": all(all(c.values()) for c in targets.values()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.json or args.out / "scaling.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    md = report.markdown(doc)
    (args.out / "scaling.md").write_text(md + "\n")
    print()
    print(report.table(results))
    print()
    print(report.summary(targets))
    pngs = report.plots(series, args.out)
    if pngs:
        print(f"charts: {', '.join(str(p) for p in pngs)}")
    else:
        print("charts skipped: matplotlib is not installed (use .venv-bench)")
    print(f"wrote {json_path} and {args.out / 'scaling.md'} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
