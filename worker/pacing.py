"""How many jobs one pop takes: as many as the worker will start within a short horizon, and no more.

A pop that takes several jobs of a deep queue saves the worker a round trip between one job and the next (it posts
the finish of the one it ran and starts the next at once: ``worker.batching``). A worker that takes more than it
starts soon starves the others: Celery's prefetch leaves a Pod that joins a deep queue of slow tasks idle while
the first Pods work through what they hold. So the batch is sized by the job durations this worker measured: the
last job of a batch starts within ``HORIZON`` seconds of its pop. A worker that has run nothing yet, or runs jobs
longer than the horizon, takes one job at a time. The next batch is popped when a quarter of this one is left
(``worker.runner``), so a worker holds at most a batch and a quarter.
"""

from __future__ import annotations

HORIZON = 0.05
"""Seconds of measured work a pop may take beyond the job the worker starts first."""

MAX_BATCH = 32
"""The most jobs one pop takes (a bound on one call's reply and on what a killed worker leaves for the reaper)."""

WEIGHT = 0.2
"""Weight of the latest job in the moving average of job durations."""


class Pacer:
    """The moving average of this worker's job durations, and the batch it allows."""

    def __init__(self) -> None:
        self._mean: float | None = None

    def ran(self, seconds: float) -> None:
        """Count a job that took ``seconds`` from its start to its end being recorded."""
        self._mean = seconds if self._mean is None else self._mean + WEIGHT * (seconds - self._mean)

    def batch(self) -> int:
        """How many jobs the next pop may take."""
        if self._mean is None or self._mean >= HORIZON:
            return 1
        return min(MAX_BATCH, 1 + int(HORIZON / max(self._mean, 1e-6)))
