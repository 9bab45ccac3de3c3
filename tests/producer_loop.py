"""A producer process for the fault tests: enqueue ``worker.examples.record`` tasks in a loop until SIGTERM.

Prints ``ok <job id>`` for every enqueue that returned and ``error <message>`` for every one that raised, so the
test can count what was accepted; logs (JSON) go to stderr.

    python -m tests.producer_loop PREFIX [SECONDS_PER_TASK [PAUSE]]

PAUSE (seconds between two enqueues) keeps the queue short enough for the workers to drain.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

from producer import Producer, TaskProcessorError
from task_processor.logs import configure_logging
from task_processor.settings import Settings

ERROR_PAUSE = 0.05
"""Seconds between two tries while Redis is away."""

RUNS_KEY = "runs"
"""The list every task appends its job id to when it runs."""


def main() -> int:
    prefix = sys.argv[1]
    seconds, pause = (float(a) for a in [*sys.argv[2:4], "0", "0"][:2])
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format, sys.stderr)
    producer = Producer.from_env(settings)
    i = 0
    while not stopping:
        job_id = f"{prefix}-{i}"
        try:
            producer.enqueue("worker.examples.record", RUNS_KEY, job_id, seconds, job_id=job_id)
        except TaskProcessorError as exc:
            print(f"error {exc}", flush=True)
            time.sleep(ERROR_PAUSE)
        else:
            print(f"ok {job_id}", flush=True)
            time.sleep(pause)
        i += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
