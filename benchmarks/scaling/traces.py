"""Seeded job traces: (arrival time, duration) pairs sorted by arrival, and the horizon they are judged on."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

Jobs = list[tuple[float, float]]


@dataclass(frozen=True)
class Trace:
    name: str
    summary: str
    jobs: Jobs
    horizon: float


def _poisson(rng: random.Random, rate: Callable[[float], float], peak: float, end: float) -> list[float]:
    """Arrival times of a Poisson process of time-varying `rate` (at most `peak`), by thinning."""
    times: list[float] = []
    at = 0.0
    while True:
        at += rng.expovariate(peak)
        if at >= end:
            return times
        if rng.random() * peak < rate(at):
            times.append(at)


def burst(rng: random.Random, scale: float) -> Trace:
    idle = 3600.0 * scale
    jobs = [(idle, rng.uniform(1.0, 5.0)) for _ in range(2000)]
    return Trace("burst", f"2,000 jobs of 1-5 s at once after {idle / 60:.0f} min idle", jobs, 2 * idle)


def diurnal(rng: random.Random, scale: float) -> Trace:
    day = 4 * 3600.0 * scale
    low, high = 0.05, 6.0

    def rate(at: float) -> float:  # night trough at both ends, a broad daytime peak in the middle
        return low + (high - low) * math.sin(math.pi * at / day) ** 4

    jobs = [(at, min(60.0, rng.lognormvariate(math.log(3.0), 0.6))) for at in _poisson(rng, rate, high, day)]
    summary = f"a day in {day / 3600:.0f} h: Poisson {low}-{high} jobs/s (sin^4), log-normal 3 s median"
    return Trace("diurnal", summary, jobs, day)


def sawtooth(rng: random.Random, scale: float) -> Trace:
    end = 2 * 3600.0 * scale
    jobs: Jobs = []
    for start in range(60, int(end), 120):  # a producer on a 2-min timer, each run late by up to 30 s
        at = start + rng.uniform(0.0, 30.0)
        jobs += [(at, rng.uniform(1.0, 5.0)) for _ in range(150)]
    return Trace("sawtooth", f"150 jobs of 1-5 s every 2 min (+0-30 s) for {end / 3600:.1f} h", jobs, end)


def trickle(rng: random.Random, scale: float) -> Trace:
    end = 3 * 3600.0 * scale
    jobs = [(at, rng.uniform(1.0, 5.0)) for at in _poisson(rng, lambda _: 1 / 240, 1 / 240, end)]
    return Trace("trickle", f"one job of 1-5 s every 4 min on average for {end / 3600:.1f} h", jobs, end)


def heavy_tail(rng: random.Random, scale: float) -> Trace:
    end = 3 * 3600.0 * scale
    jobs = [
        (at, min(600.0, max(0.05, rng.lognormvariate(math.log(3.0), 2.0))))
        for at in _poisson(rng, lambda _: 0.4, 0.4, end)
    ]
    summary = f"0.4 jobs/s for {end / 3600:.1f} h, log-normal durations (median 3 s, sigma 2) in 50 ms-10 min"
    return Trace("heavy-tail", summary, jobs, end)


MAKERS: dict[str, Callable[[random.Random, float], Trace]] = {
    "burst": burst,
    "diurnal": diurnal,
    "sawtooth": sawtooth,
    "trickle": trickle,
    "heavy-tail": heavy_tail,
}


def make(name: str, quick: bool, seed: int) -> Trace:
    return MAKERS[name](random.Random(f"{name}:{seed}"), 0.25 if quick else 1.0)
