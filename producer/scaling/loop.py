"""The autoscaler's outer loop: a pass every interval while leading, any fault logged once and retried."""

from __future__ import annotations

import threading
from collections.abc import Callable

from producer.scaling import metrics
from task_processor.errors import first_line
from task_processor.logs import get_logger

BACKOFF_MAX = 30.0
"""Longest pause, in seconds, between two attempts while Redis or the target keeps failing."""

log = get_logger("task_processor.autoscaler")


class FailureStreak:
    """Failures in a row of one loop (or one pool): each cause logged once, the pause doubling up to BACKOFF_MAX."""

    def __init__(self, interval: float, **fields: object) -> None:
        self.interval = interval
        self.fields = fields
        self.failures = 0
        self.last_error: str | None = None

    def failed(self, exc: Exception) -> float:
        """Count and (once per cause) log ``exc``; the seconds to wait before the next try."""
        metrics.failed(exc)
        self.failures += 1
        error = first_line(exc)
        if error != self.last_error:  # once per streak and cause, not once per try
            log.warning("autoscaler step failed; retrying with backoff", error=error, **self.fields)
            self.last_error = error
        return min(self.interval * 2.0**self.failures, BACKOFF_MAX)

    def succeeded(self) -> None:
        if self.failures:
            log.info("autoscaler recovered", failed_steps=self.failures, **self.fields)
        self.failures, self.last_error = 0, None


def run_loop(
    stop: threading.Event,
    interval: float,
    step: Callable[[], object],
    leading: Callable[[], bool],
    report_state: Callable[[], None],
    close: Callable[[], None],
) -> None:
    """Call ``step`` every ``interval`` seconds while ``leading()``, and ``report_state`` after each pass, until
    ``stop`` is set; then ``close()``."""
    streak = FailureStreak(interval)
    try:
        while not stop.is_set():
            pause = interval
            try:
                if leading():
                    step()
            # Any fault (Redis down, API error, a bug in a target) is retried: a scaler that exits leaves
            # the workers at whatever size they had, which is worse than a scaler that keeps trying.
            except Exception as exc:
                pause = streak.failed(exc)
            else:
                streak.succeeded()
            report_state()
            stop.wait(pause)
    finally:
        close()
