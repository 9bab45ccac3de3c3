"""When a worker process has done enough: ``--max-jobs`` and ``--max-memory`` recycle it, warm.

A task that leaks (memory, file handles, C-library state) leaks into the long-running process that runs it. The
worker exits cleanly after a job once a limit is reached, and the local deployment or Kubernetes starts a fresh
one. With ``--concurrency`` the limits are the process's, shared by its slots.
"""

from __future__ import annotations

import os
import resource
import sys
import threading

MIB = 1024 * 1024


def rss_mib() -> float:
    """This process's resident set size now, in MiB (its peak where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB elsewhere
        return peak / MIB if sys.platform == "darwin" else peak / 1024


class Recycler:
    """Counts finished jobs across the process's slots and says when the process should be replaced."""

    def __init__(self, max_jobs: int | None = None, max_memory_mib: int | None = None) -> None:
        self.max_jobs = max_jobs
        self.max_memory_mib = max_memory_mib
        self._jobs = 0
        self._lock = threading.Lock()

    def spent(self) -> str | None:
        """Called once after each job: why the process should stop taking jobs, or None."""
        with self._lock:
            self._jobs += 1
            jobs = self._jobs
        if self.max_jobs is not None and jobs >= self.max_jobs:
            return f"ran {jobs} jobs (--max-jobs {self.max_jobs})"
        if self.max_memory_mib is not None and (rss := rss_mib()) > self.max_memory_mib:
            return f"resident memory {rss:.0f} MiB is above --max-memory {self.max_memory_mib}"
        return None
