"""Celery with its Redis broker, defaults otherwise; results are not stored (the others store none either)."""

from __future__ import annotations

import os

from celery import Celery

from benchmarks import tasks

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.task_ignore_result = True
app.conf.worker_hijack_root_logger = False

noop = app.task(name="noop")(tasks.noop)
mark_done = app.task(name="mark_done")(tasks.mark_done)
stamp = app.task(name="stamp")(tasks.stamp)
