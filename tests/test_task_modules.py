"""TASK_MODULES is the trust boundary: a worker runs a job only when its function (and each callback) resolves to a
function defined in an allowed module, never imports a module outside them, and refuses everything when unset.

Jobs are planted the way an attacker with Redis access would: through plain RQ, with the JSON serializer. Every
planted call would leave a marker file behind if it ran (or, for a module, if it were merely imported)."""

from __future__ import annotations

import json
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Callback, Job, JobStatus
from rq.registry import FailedJobRegistry

from producer import InvalidTaskError, Producer, Task
from task_processor.errors import ConfigError
from tests.conftest import Proc, exc_string, job_lines, run

ALLOWED = "trusted.tasks"
"""The module of the tests' own tasks here, written into a temp dir with the untrusted package beside it."""


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """Two packages on the workers' PYTHONPATH: ``trusted`` (its ``tasks`` allowed, its ``helpers`` not) and
    ``untrusted``; each module touches a marker file when imported, each function when run."""
    root = tmp_path / "code"
    markers = tmp_path / "markers"
    markers.mkdir()
    mark = f"""
        from pathlib import Path

        def _mark(name):
            Path({str(markers)!r}, name).touch()
    """
    _write(
        root,
        {
            "trusted/__init__.py": "",
            "trusted/marker.py": mark,
            "trusted/tasks.py": """
                import os
                import subprocess

                from trusted import helpers
                from trusted.helpers import run as imported_run
                from trusted.marker import _mark

                def ok(name):
                    _mark(name)
                    return name

                class Box:
                    @staticmethod
                    def ok(name):
                        _mark(name)
                        return name
            """,
            "trusted/helpers.py": """
                from trusted.marker import _mark

                def run(name):  # imported by the allowed module (its own code), but defined outside it
                    _mark(name)
            """,
            "trusted/other.py": """
                from trusted.marker import _mark

                _mark("import-trusted.other")

                def run(name):
                    _mark(name)
            """,
            "untrusted/__init__.py": f"""
                from pathlib import Path

                Path({str(markers)!r}, "import-untrusted").touch()

                def run(name):
                    Path({str(markers)!r}, name).touch()
            """,
        },
    )
    return root


def markers(code: Path) -> list[str]:
    return sorted(path.name for path in (code.parent / "markers").iterdir())


def planted(conn: redis.Redis, code: Path) -> dict[str, Job]:
    """Jobs for code outside TASK_MODULES, each of which leaves a marker named after its path if it runs."""
    queue = Queue("default", connection=conn, serializer="json")
    out = code.parent / "markers"
    calls: dict[str, tuple[str, ...]] = {
        "os.system": (f"touch {out}/os.system",),
        "subprocess.getoutput": (f"touch {out}/subprocess.getoutput",),
        "builtins.exec": (f"open({str(out / 'builtins.exec')!r}, 'w')",),
        "untrusted.run": ("untrusted.run",),  # an installed package outside the list: not even imported
        "trusted.other.run": ("trusted.other.run",),  # a sibling of the allowed module: not imported either
        "trusted.tasks.os.system": (f"touch {out}/trusted.tasks.os.system",),  # walks into os
        "trusted.tasks.subprocess.getoutput": (f"touch {out}/trusted.tasks.subprocess.getoutput",),
        "trusted.tasks.helpers.run": ("trusted.tasks.helpers.run",),  # walks into a module outside the list
        "trusted.tasks.imported_run": ("trusted.tasks.imported_run",),  # imported into, not defined in, tasks
    }
    jobs = {path: queue.enqueue(path, *args, retry=None) for path, args in calls.items()}
    # A method bound to an instance carried in the job's data (RQ's form for ``obj.method``; JSON carries a str).
    jobs["instance"] = queue.enqueue(f"{ALLOWED}.ok", "instance-ran")
    conn.hset(jobs["instance"].key, "data", zlib.compress(json.dumps(["format", "{}", ["x"], {}]).encode()))
    # An allowed function with a callback outside the list: the whole job is refused, neither runs.
    jobs["on_success"] = queue.enqueue(f"{ALLOWED}.ok", "success-job-ran", on_success=Callback("untrusted.run"))
    jobs["on_failure"] = queue.enqueue(f"{ALLOWED}.ok", "failure-job-ran", on_failure=Callback("trusted.other.run"))
    jobs["on_stopped"] = queue.enqueue(f"{ALLOWED}.ok", "stopped-job-ran", on_stopped=Callback("os.system"))
    return jobs


@pytest.mark.parametrize("concurrency", ["1", "3"])
@pytest.mark.parametrize("modules", [ALLOWED, None], ids=["set", "unset"])
def test_planted_jobs_outside_task_modules_fail_without_side_effects(
    conn: redis.Redis, spawn: Callable[..., Proc], code: Path, concurrency: str, modules: str | None
) -> None:
    jobs = planted(conn, code)
    good = Queue("default", connection=conn, serializer="json").enqueue(f"{ALLOWED}.ok", "good-ran")
    worker = spawn(
        "task-worker",
        "--burst",
        "--concurrency",
        concurrency,
        extra_env={"PYTHONPATH": str(code), "TASK_MODULES": modules or ""},
    )
    assert worker.wait(timeout=60) == 0, worker.output()[-3000:]

    side_effects = [m for m in markers(code) if m != "good-ran"]
    assert side_effects == [], f"planted jobs ran or imported code outside TASK_MODULES: {side_effects}"
    failed = set(FailedJobRegistry("default", connection=conn).get_job_ids())
    lines = job_lines(worker)
    for what, job in jobs.items():
        assert job.id in failed, what
        error = exc_string(job)
        assert "\n" not in error, error
        assert error.startswith("refused to run "), error
        assert ("TASK_MODULES=trusted.tasks" if modules else "TASK_MODULES is not set") in error, error
        # Logged once, as refused, with the same line; no retry.
        [line] = [line for line in lines if line["job_id"] == job.id]
        assert (line["outcome"], line["error"]) == ("refused", error)
    if modules:
        assert good.get_status(refresh=True) == JobStatus.FINISHED
        assert markers(code) == ["good-ran"]
    else:
        assert good.id in failed  # default deny: even the tasks' own module runs nothing
        assert "set TASK_MODULES on the workers" in exc_string(good)


def test_refusal_names_the_path_what_it_resolved_to_and_task_modules(
    conn: redis.Redis, redis_url: str, spawn: Callable[..., Proc], code: Path
) -> None:
    queue = Queue("default", connection=conn, serializer="json")
    walked = queue.enqueue(f"{ALLOWED}.helpers.run", "x")
    outside = queue.enqueue("os.system", "true")
    builtin = queue.enqueue(f"{ALLOWED}.os.system", "true")
    retried = Producer(redis_url).enqueue(f"{ALLOWED}.subprocess.getoutput", "true", retries=3, retry_backoff=0)
    worker = spawn("task-worker", "--burst", extra_env={"PYTHONPATH": str(code), "TASK_MODULES": ALLOWED})
    assert worker.wait(timeout=60) == 0, worker.output()[-3000:]
    assert exc_string(walked) == (
        "refused to run 'trusted.tasks.helpers.run': it resolves to trusted.helpers.run, defined outside "
        "TASK_MODULES; TASK_MODULES=trusted.tasks: add the module of the task to TASK_MODULES on the workers if "
        "it is yours, or delete the job"
    )
    assert exc_string(outside).startswith(
        "refused to run 'os.system': its module is not in TASK_MODULES; TASK_MODULES=trusted.tasks"
    )
    assert "it resolves to posix.system (a builtin_function_or_method), not a function" in exc_string(builtin)
    # A refusal is final: retries are not spent on it.
    assert retried.get_status(refresh=True) == JobStatus.FAILED
    assert [line["attempt"] for line in job_lines(worker) if line["job_id"] == retried.id] == [1]


def test_allowed_functions_and_their_submodules_run(conn: redis.Redis, spawn: Callable[..., Proc], code: Path) -> None:
    queue = Queue("default", connection=conn, serializer="json")
    jobs = [
        queue.enqueue(f"{ALLOWED}.ok", "plain"),
        queue.enqueue(f"{ALLOWED}.Box.ok", "static"),
        queue.enqueue("trusted.helpers.run", "submodule"),
    ]
    worker = spawn("task-worker", "--burst", extra_env={"PYTHONPATH": str(code), "TASK_MODULES": "trusted"})
    assert worker.wait(timeout=60) == 0, worker.output()[-3000:]
    assert [job.get_status(refresh=True) for job in jobs] == [JobStatus.FINISHED] * 3
    assert {"plain", "static", "submodule"} <= set(markers(code))


def test_producer_refuses_paths_outside_task_modules_and_writes_nothing(conn: redis.Redis, redis_url: str) -> None:
    producer = Producer(redis_url, modules=["worker.examples"])
    for path in ("os.system", "subprocess.getoutput", "builtins.exec", "worker.other.run", "worker.examplesx.run"):
        with pytest.raises(InvalidTaskError, match=r"outside TASK_MODULES=worker\.examples"):
            producer.enqueue(path, "true")
    with pytest.raises(InvalidTaskError, match="outside TASK_MODULES"):
        producer.enqueue_many([Task("worker.examples.add", (1, 2)), Task("os.system", ("true",))])
    assert conn.dbsize() == 0
    assert producer.enqueue("worker.examples.add", 1, 2).func_name == "worker.examples.add"
    # Unset: the producer does not check (it may not know the workers' modules); the workers still refuse.
    assert Producer(redis_url).enqueue("os.system", "true").func_name == "os.system"
    with pytest.raises(ConfigError, match="is not a module name"):
        Producer(redis_url, modules="worker.examples, os system")


def test_producer_from_env_reads_task_modules(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("TASK_MODULES", "myapp.tasks, worker.examples")
    assert Producer.from_env().modules == ("myapp.tasks", "worker.examples")
    with pytest.raises(InvalidTaskError, match=r"TASK_MODULES=myapp\.tasks,worker\.examples"):
        Producer.from_env().enqueue("os.system", "true")


@pytest.mark.parametrize("form", ["args", "file"])
def test_cli_enqueue_refuses_paths_outside_task_modules(
    conn: redis.Redis, env: dict[str, str], tmp_path: Path, form: str
) -> None:
    if form == "args":
        args = ["task-producer", "enqueue", "os.system", "touch /tmp/x"]
    else:
        lines = [{"func": "worker.examples.add", "args": [1, 2]}, {"func": "os.system", "args": ["true"]}]
        (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        args = ["task-producer", "enqueue", "--from-file", str(tmp_path / "tasks.jsonl")]
    result = run(args, env)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert "'os.system' is outside TASK_MODULES=worker.examples" in line
    assert conn.dbsize() == 0


def test_worker_warns_at_start_when_task_modules_is_unset_or_broken(
    spawn: Callable[..., Proc], conn: redis.Redis
) -> None:
    unset = spawn("task-worker", "--burst", extra_env={"TASK_MODULES": ""})
    broken = spawn("task-worker", "--burst", extra_env={"TASK_MODULES": "worker.examples,nosuchapp.tasks"})
    assert unset.wait(timeout=30) == 0
    assert broken.wait(timeout=30) == 0
    assert any(line["event"].startswith("TASK_MODULES is not set") for line in unset.json_lines())
    warned = [line for line in broken.json_lines() if line["event"].startswith("cannot import a module")]
    assert warned, broken.output()
    assert warned[0]["problem"].startswith("nosuchapp.tasks: ModuleNotFoundError")
