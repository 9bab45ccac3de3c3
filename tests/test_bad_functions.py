"""Bad input, unknown or malformed task functions: the producer refuses what is not a dotted path a worker could
import with ONE line naming it (the API raises InvalidTaskError, ``task-producer enqueue`` exits 2) and writes
nothing; a well-formed path a worker cannot import or call fails its own job with an error naming it, and the
worker goes on with the next jobs.

The other kinds of bad input, and what these modules share: tests/bad_input.py.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import assume, example, given
from hypothesis import strategies as st
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from producer import InvalidTaskError, Producer
from tests.bad_input import (
    attempt,
    hypothesis_settings,
    live_worker_fixture,  # noqa: F401  (the live_worker fixture)
    one_error_line,
    run_all,
)
from tests.conftest import Proc, exc_string, job_lines, recorded
from worker import examples


def top_level_importable(path: str) -> bool:
    try:
        return importlib.util.find_spec(path.split(".")[0]) is not None
    except (ImportError, ValueError):
        return True


class _CallableThing:
    """Module-level, so only its shape (an instance, a bound method) is what a worker cannot call."""

    def __call__(self) -> None:
        pass

    def method(self) -> None:
        pass


def _nested() -> Callable[[], None]:
    def inner() -> None:
        pass

    return inner


MALFORMED_FUNCS = [
    pytest.param("", id="empty"),
    pytest.param("noop", id="no-module"),
    pytest.param("os.path.", id="trailing-dot"),
    pytest.param(".os.path", id="leading-dot"),
    pytest.param("os..path", id="double-dot"),
    pytest.param("my-app.tasks", id="dash"),
    pytest.param("1app.run", id="leading-digit"),
    pytest.param("a.b c", id="space"),
    pytest.param("a.b\n", id="trailing-newline"),
    pytest.param("a.b;rm -rf /", id="shell"),
    pytest.param("a/b.c", id="slash"),
    pytest.param("äpp.run", id="non-ascii-first"),
    pytest.param("os.path:join", id="colon"),
    pytest.param(None, id="none"),
    pytest.param(42, id="int"),
    pytest.param(b"worker.examples.noop", id="bytes"),
    pytest.param(lambda: None, id="lambda"),
    pytest.param(_nested(), id="nested-function"),
    pytest.param(
        functools.partial(examples.add, 1),
        id="partial",
    ),
    pytest.param(
        _CallableThing(),
        id="callable-instance",
    ),
    pytest.param(
        _CallableThing().method,
        id="bound-method",
    ),
]


@pytest.mark.parametrize("func", MALFORMED_FUNCS)
def test_malformed_function_is_refused_with_one_line_and_nothing_written(
    producer: Producer, conn: redis.Redis, func: Any
) -> None:
    with pytest.raises(InvalidTaskError) as info:
        producer.enqueue(func)
    message = str(info.value)
    assert "\n" not in message
    if isinstance(func, str | bytes | int) or func is None:
        assert repr(func) in message
    assert conn.dbsize() == 0


def test_malformed_function_on_the_command_line_is_exit_2(
    env: dict[str, str], conn: redis.Redis, tmp_path: Path
) -> None:
    paths = ["", "noop", "os.path.", "a.b;rm -rf /", "1app.run"]
    for path, result in zip(
        paths, run_all([["task-producer", "enqueue", path] for path in paths], env, tmp_path), strict=True
    ):
        assert result.returncode == 2, (path, result.stderr)
        assert repr(path) in one_error_line(result.stderr, "task-producer")
        assert result.stdout == ""
    assert conn.dbsize() == 0


WELL_FORMED_FUNC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
"""A module path and a name, dot-separated; each part an ASCII letter or '_', then word characters."""

dotted_paths = st.from_regex(r"[A-Za-z_]\w{0,8}(\.[A-Za-z_]\w{0,8}){1,3}", fullmatch=True)
"""Paths that look like ``module.function`` (with Unicode word characters): mostly accepted, never importable."""


@hypothesis_settings(50)
@given(path=st.one_of(st.text(max_size=40), dotted_paths))
@example(path="a.b\n")
@example(path="os.path.")
@example(path="a." + "b" * 5000)
@example(path="a.b")
@example(path="_a.b²")
def test_any_text_as_function_is_refused_or_stored_exactly(producer: Producer, conn: redis.Redis, path: str) -> None:
    before = conn.dbsize()
    job, refused = attempt(lambda: producer.enqueue(path), InvalidTaskError)
    # Refused exactly when it is not a dotted path a worker could import, accepted exactly when it is.
    assert (refused is None) == bool(WELL_FORMED_FUNC.fullmatch(path)), (path, refused)
    if refused is not None:
        assert "\n" not in str(refused)
        assert repr(path) in str(refused)
        assert conn.dbsize() == before
        return
    assert Job.fetch(job.id, connection=conn, serializer="json").func_name == path


OUTSIDE_PATHS = [
    "nosuchapp.tasks.resize",
    "worker.nosuchmodule.run",
    "os.nosuchfunc",
    "a.class",  # a keyword: well-formed for the producer, never importable
    "a.b²",  # a Unicode word character that is not valid in an identifier
]
"""Paths outside TASK_MODULES (worker.examples): refused without importing anything."""

UNIMPORTABLE_PATHS = ["worker.examples.nosuch", "worker.examples.nosuchmodule.run"]
"""Paths inside TASK_MODULES that name nothing: the import fails."""


def test_unimportable_functions_fail_their_job_and_the_next_ones_run(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    bad, good = {}, []
    for i, path in enumerate(OUTSIDE_PATHS + UNIMPORTABLE_PATHS):
        bad[path] = producer.enqueue(path, "arg")
        good.append(producer.enqueue("worker.examples.record", "ran", str(i)))
    worker = spawn("task-worker", "--burst")
    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]
    assert recorded(conn, "ran") == [str(i) for i in range(len(bad))]
    failed = set(FailedJobRegistry("default", connection=conn).get_job_ids())
    lines = {line["job_id"]: line for line in job_lines(worker)}
    for path, job in bad.items():
        assert job.id in failed, path
        if path in OUTSIDE_PATHS:
            assert lines[job.id]["outcome"] == "refused"
            assert lines[job.id]["error"].startswith(f"refused to run {path!r}: ")
            assert lines[job.id]["error"] == exc_string(job)
            continue
        assert lines[job.id]["outcome"] == "failed"
        assert lines[job.id]["error"].startswith("task_processor.taskmodules.TaskNotFoundError: ")
        assert f"cannot import task function {path!r}" in lines[job.id]["error"]
        assert f"cannot import task function {path!r}" in exc_string(job)
    assert all(line.startswith("{") for line in worker.output().splitlines() if line.strip())


def test_non_callable_function_fails_with_an_error_naming_it(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    jobs = {path: producer.enqueue(path) for path in ("os.sep", "json.decoder")}
    after = producer.enqueue("worker.examples.add", 1, 2)
    worker = spawn("task-worker", "--burst")
    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]
    assert producer.wait([after], timeout=5) == [3]
    lines = {line["job_id"]: line for line in job_lines(worker)}
    for path, job in jobs.items():
        assert job.get_status(refresh=True) == JobStatus.FAILED
        assert repr(path) in lines[job.id]["error"], lines[job.id]["error"]


@hypothesis_settings(25)
@given(path=dotted_paths, inside=st.booleans())
def test_any_well_formed_unimportable_function_fails_cleanly_on_a_live_worker(
    producer: Producer, conn: redis.Redis, live_worker: Proc, path: str, inside: bool
) -> None:
    if inside:  # a name under the allowed module: the import fails
        path = f"worker.examples.{path}"
        assume(not hasattr(examples, path.split(".")[2]))
    else:
        assume(not top_level_importable(path))
    bad = producer.enqueue(path)
    good = producer.enqueue("worker.examples.add", 1, 2)
    assert producer.wait([good], timeout=15) == [3]
    assert bad.get_status(refresh=True) == JobStatus.FAILED
    importable_name = inside and all(part.isidentifier() for part in path.split("."))
    expected = f"cannot import task function {path!r}" if importable_name else f"refused to run {path!r}"
    assert expected in exc_string(bad)
    assert live_worker.popen.poll() is None, live_worker.output()[-3000:]
