"""Bad input, tried systematically: each gives ONE clear error naming the problem, and none corrupts the queue,
kills a worker or drops other tasks.

Tables (``parametrize``) hold the known cases, hypothesis strategies the arbitrary ones. Workers are real
``task-worker`` processes against the session's real redis-server.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from producer import (
    ConfigError,
    InvalidTaskError,
    Producer,
    RedisCommandError,
    RedisUnavailableError,
    Task,
    TaskFailedError,
    TaskProcessorError,
)
from producer.commands.redis_server import LocalRedisServer, free_port
from task_processor.settings import Settings
from tests.conftest import BIN, Proc, run, wait_for
from worker import examples


def hypothesis_settings(count: int) -> settings:
    """Hypothesis settings for these tests: few examples, no deadline (real processes), no example database."""
    return settings(
        max_examples=count,
        deadline=None,
        database=None,  # no .hypothesis/ directory written into the repository
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


DOCUMENTED_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Queue names: 1-64 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit (what the refusal says to use)."""

ERROR_WITH_MESSAGE = re.compile(r"[\w.]+: \S")
"""A failed job's error line that says what went wrong: ``SomeError: what``, not a bare class name."""


# --------------------------------------------------------------------------------------------------- helpers


@dataclass
class Finished:
    """A command run to completion (or killed at the deadline: ``returncode`` None)."""

    args: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float


_runs = itertools.count()


def run_all(
    commands: list[list[str]],
    env: dict[str, str],
    tmp_path: Path,
    timeout: float = 30,
    envs: list[dict[str, str]] | None = None,
) -> list[Finished]:
    """Run project commands side by side (they are independent), each killed if it outlives ``timeout``.

    ``envs`` gives each command its own extra variables on top of ``env``.
    """
    started = time.monotonic()
    procs = []
    for i, command in enumerate(commands):
        out, err = (tmp_path / f"run{next(_runs)}.{kind}" for kind in ("out", "err"))
        with out.open("wb") as stdout, err.open("wb") as stderr:
            popen = subprocess.Popen(
                [str(BIN / command[0]), *command[1:]],
                env={**env, **(envs[i] if envs else {})},
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        procs.append((command, popen, out, err))
    results = []
    for command, popen, out, err in procs:
        try:
            code: int | None = popen.wait(timeout=max(0.1, started + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)  # the group we started: the command and any child of it
            popen.wait()
            code = None
        elapsed = time.monotonic() - started
        results.append(
            Finished(command, code, out.read_text(errors="replace"), err.read_text(errors="replace"), elapsed)
        )
    return results


def one_error_line(text: str, prog: str) -> str:
    """``text`` is exactly one line ``<prog>: error: ...`` with no traceback; returns it."""
    assert "Traceback" not in text, text
    assert text.count("\n") == 1, text
    assert text.startswith(f"{prog}: error: "), text
    return text.strip()


def attempt(call: Callable[[], Any], error: type[Exception]) -> tuple[Any, Exception | None]:
    """``(call(), None)``, or ``(None, the error)`` when ``call`` raises ``error``: lets a test branch on either."""
    try:
        return call(), None
    except error as exc:
        return None, exc


def recorded(conn: redis.Redis, key: str) -> list[str]:
    return [raw.decode() for raw in conn.lrange(key, 0, -1)]


def job_lines(proc: Proc) -> list[dict[str, Any]]:
    return [line for line in proc.json_lines() if line.get("event") == "job"]


def snapshot(conn: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key with its serialized value: equal snapshots mean nothing was written."""
    return {key: conn.dump(key) for key in sorted(conn.keys("*"))}


def top_level_importable(path: str) -> bool:
    try:
        return importlib.util.find_spec(path.split(".")[0]) is not None
    except (ImportError, ValueError):
        return True


@pytest.fixture
def live_worker(spawn: Callable[..., Proc]) -> Proc:
    """One long-running ``task-worker`` shared by every example of a hypothesis test (started before the first)."""
    return spawn("task-worker")


def strict_repr(value: Any) -> str:
    """``repr`` tells 1 from 1.0 from True and -0.0 from 0.0, and keeps dict order: equality for a round trip."""
    return repr(value)


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


# -------------------------------------------------------------------------- 1. unknown or malformed function

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
            assert lines[job.id]["error"] == job.latest_result().exc_string
            continue
        assert lines[job.id]["outcome"] == "failed"
        assert lines[job.id]["error"].startswith("task_processor.taskmodules.TaskNotFoundError: ")
        assert f"cannot import task function {path!r}" in lines[job.id]["error"]
        assert f"cannot import task function {path!r}" in job.latest_result().exc_string
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
    assert expected in bad.latest_result().exc_string
    assert live_worker.popen.poll() is None, live_worker.output()[-3000:]


# ------------------------------------------------------------------------------ 2. arguments JSON cannot carry

json_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _nest(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@hypothesis_settings(30)
@given(values=st.lists(json_values, min_size=1, max_size=4))
@example(values=["\ud800", {"\udc80": "lone surrogates"}, "a\x00b", "é🎉\u2028"])
@example(values=[-0.0, 5e-324, 1.7976931348623157e308, 2**200, -(2**63), True, 1, 1.0])
@example(values=[{"": None, "a.b": [], "rq:job:x": {}}, _nest(300)])
def test_json_values_round_trip_exactly_through_a_real_worker(
    producer: Producer, conn: redis.Redis, live_worker: Proc, values: list[Any]
) -> None:
    # No identity task exists; add(a, b) is a + b, so add([v], []) returns [v] from a real worker.
    tasks = [Task("worker.examples.add", ([v], [])) for v in values]
    tasks += [Task("worker.examples.add", kwargs={"a": [v], "b": []}) for v in values]
    jobs = producer.enqueue_many(tasks)
    for job, v in zip(jobs, values * 2, strict=True):
        stored = Job.fetch(job.id, connection=conn, serializer="json")
        assert strict_repr(stored.args or list(stored.kwargs.values())) == strict_repr([[v], []])
    results = producer.wait(jobs, timeout=30)
    assert [strict_repr(r) for r in results] == [strict_repr([v]) for v in values * 2]
    assert live_worker.popen.poll() is None, live_worker.output()[-3000:]


NON_JSON_VALUES = st.one_of(
    st.sets(st.integers(), max_size=2),
    st.frozensets(st.integers(), max_size=2),
    st.binary(max_size=4),
    st.binary(max_size=4).map(bytearray),
    st.builds(object),
    st.complex_numbers(allow_nan=False),
    st.dates(),
    st.datetimes(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    st.builds(range, st.integers(0, 3)),
)
NON_STR_KEYS = st.one_of(
    st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False), st.tuples(st.integers()), st.binary(max_size=3)
)


@st.composite
def poisoned_call(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any], str]:
    """Arguments that are plain JSON except for one leaf (or one dict key) somewhere; and the path to it."""
    if draw(st.booleans()):
        leaf: Any = draw(NON_JSON_VALUES)
        tail = " is "
    else:
        bad_key = draw(NON_STR_KEYS)
        leaf = {bad_key: draw(json_values)}
        tail = f" has the key {bad_key!r}"
    steps = draw(st.lists(st.integers(0, 3) | st.text(max_size=5), max_size=4))
    value, suffix = leaf, ""
    for step in reversed(steps):
        if isinstance(step, int):
            before = draw(st.lists(json_values, min_size=step, max_size=step))
            value = [*before, value, *draw(st.lists(json_values, max_size=2))]
            suffix = f"[{step}]{suffix}"
        else:
            others = draw(
                st.dictionaries(st.text(max_size=5).filter(lambda k, s=step: k != s), json_values, max_size=2)
            )
            value = {**others, step: value}
            suffix = f"[{step!r}]{suffix}"
    earlier = tuple(draw(st.lists(json_values, max_size=2)))
    if draw(st.booleans()):
        return (*earlier, value), {}, f"argument {len(earlier) + 1}{suffix}{tail}"
    name = draw(st.text(max_size=6))
    return earlier, {name: value}, f"keyword argument {name!r}{suffix}{tail}"


@hypothesis_settings(50)
@given(call=poisoned_call())
@example(call=(({1, 2},), {}, "argument 1 is "))
@example(call=((), {"table": {"ok": {1: "a"}}}, "keyword argument 'table'['ok'] has the key 1"))
@example(call=(([0, {"x": [float("nan")]}],), {}, "argument 1[1]['x'][0] is "))
def test_any_non_json_leaf_is_refused_naming_its_path(
    producer: Producer, conn: redis.Redis, call: tuple[tuple[Any, ...], dict[str, Any], str]
) -> None:
    args, kwargs, where = call
    before = conn.dbsize()
    with pytest.raises(InvalidTaskError) as info:
        producer.enqueue_many([Task("worker.examples.add", args, kwargs)])
    message = str(info.value)
    assert "\n" not in message
    assert where in message, (where, message)
    assert conn.dbsize() == before


def _circular_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _circular_dict() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


def _nest_dicts(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for i in range(depth):
        value = {f"k{i}": value}
    return value


DEEPEST = 500
"""README: arguments nest at most 500 levels of lists and dicts (the argument itself is the first level)."""

DEEP_PATH = "[0][0][0][0][0][0][0]...(490 more)...[0][0][0]"
"""How a refusal names the list 501 levels down: the first and the last steps, the count of those between."""

REFUSAL_FIX = (
    ": pass plain data (str, int, float, bool, None, lists, dicts with string keys), "
    "or set TASK_SERIALIZER=pickle on producers and workers"
)


@pytest.mark.parametrize(
    ("value", "zero"),
    [
        pytest.param(_nest(DEEPEST - 1), [], id="lists-500-deep"),
        pytest.param([_nest_dicts(DEEPEST - 2)], [], id="dicts-500-deep"),
        pytest.param([{"a": _nest(DEEPEST - 3)}], [], id="mixed-500-deep"),
        pytest.param(2**1000, 0, id="int-302-digits"),
        pytest.param(-(10**4299), 0, id="int-4300-digits"),
        pytest.param("x" * 100_000, "", id="long-string"),
    ],
)
def test_edge_values_json_carries_are_accepted_and_run(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc], value: Any, zero: Any
) -> None:
    positional = producer.enqueue("worker.examples.add", value, zero)
    keyword = producer.enqueue("worker.examples.add", a=value, b=zero)
    assert strict_repr(Job.fetch(positional.id, connection=conn, serializer="json").args[0]) == strict_repr(value)
    worker = spawn("task-worker", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()[-3000:]
    # A worker decodes it, and the result comes back the same: add(value, zero) is value.
    assert [strict_repr(r) for r in producer.wait([positional, keyword], timeout=10)] == [strict_repr(value)] * 2


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param(_circular_list(), "argument 1[1] contains itself (a circular reference)", id="circular-list"),
        pytest.param(_circular_dict(), "argument 1['self'] contains itself (a circular reference)", id="circular-dict"),
        pytest.param(
            _nest(DEEPEST),
            f"argument 1{DEEP_PATH} nests deeper than 500 levels of lists and dicts",
            id="lists-501-deep",
        ),
        pytest.param(
            _nest(700),
            f"argument 1{DEEP_PATH} nests deeper than 500 levels of lists and dicts",
            id="lists-701-deep",
        ),
        pytest.param(
            [_nest_dicts(DEEPEST - 1)],
            "nests deeper than 500 levels of lists and dicts",
            id="dicts-501-deep",
        ),
        pytest.param(
            10**4300, "argument 1 is an integer of more than 4300 digits, which JSON cannot carry", id="int-4301-digits"
        ),
    ],
)
def test_edge_values_json_cannot_carry_are_refused_naming_the_place(
    producer: Producer, conn: redis.Redis, value: Any, problem: str
) -> None:
    with pytest.raises(InvalidTaskError) as info:
        producer.enqueue("worker.examples.add", value, [])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("worker.examples.add: argument 1"), message
    assert problem in message, message
    assert message.endswith(REFUSAL_FIX), message
    assert conn.dbsize() == 0
    # The same value as a keyword argument is named by its keyword.
    with pytest.raises(InvalidTaskError, match=re.escape("keyword argument 'a'")):
        producer.enqueue("worker.examples.add", a=value, b=[])
    assert conn.dbsize() == 0


# ----------------------------------------------------------------------------------------- 3. oversized payload


def test_an_argument_above_a_documented_limit_is_refused(producer: Producer, conn: redis.Redis) -> None:
    with pytest.raises(InvalidTaskError, match=r"argument 1.*(too large|limit)"):
        producer.enqueue("worker.examples.add", "x" * (50 * 1024 * 1024), "")
    assert conn.dbsize() == 0


@pytest.fixture
def small_bulk_redis() -> Any:
    """A dedicated redis-server whose proto-max-bulk-len is 1 MB: Redis' own 512 MB limit, made cheap to reach."""
    with LocalRedisServer(appendonly=False) as server:
        redis.Redis(port=server.port).config_set("proto-max-bulk-len", "1mb")
        yield server


def test_a_payload_over_the_redis_bulk_limit_writes_nothing(small_bulk_redis: LocalRedisServer) -> None:
    producer = Producer(small_bulk_redis.url)
    client = redis.Redis(port=small_bulk_redis.port)
    incompressible = os.urandom(2 * 1024 * 1024).hex()  # 4 MB that zlib cannot shrink below 1 MB
    with pytest.raises(TaskProcessorError) as info:
        producer.enqueue("worker.examples.add", incompressible, "")
    assert "\n" not in str(info.value)
    assert client.dbsize() == 0
    # The producer and the server go on working.
    job = producer.enqueue("worker.examples.add", 1, 2)
    assert client.lrange("rq:queue:default", 0, -1) == [job.id.encode()]


def test_a_payload_over_the_redis_bulk_limit_is_named_as_too_large(small_bulk_redis: LocalRedisServer) -> None:
    producer = Producer(small_bulk_redis.url)
    with pytest.raises(InvalidTaskError, match=r"too large|limit|size") as info:
        producer.enqueue("worker.examples.add", os.urandom(2 * 1024 * 1024).hex(), "")
    assert "cannot reach" not in str(info.value)


# -------------------------------------------------------------------------------------------- 4. queue names

BAD_QUEUE_NAMES = [
    "",
    "a b",
    "a:b",
    "rq:queue:x",
    "-x",
    ".x",
    "x" * 65,
    "é",
    "a\nb",
    " default",
    "default,low",
    "a/b",
    "*",
    "\x00",
]


@pytest.mark.parametrize("name", [*BAD_QUEUE_NAMES, 0, b"default", ("default",)])
def test_producer_refuses_a_bad_default_queue(redis_url: str, conn: redis.Redis, name: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Producer(redis_url, queue=name)
    assert "\n" not in str(info.value)
    assert repr(name) in str(info.value)
    assert conn.dbsize() == 0


@pytest.mark.parametrize(
    "name",
    [
        *BAD_QUEUE_NAMES[1:],
        pytest.param(
            "",
            id="empty",
        ),
        pytest.param(
            0,
            id="zero",
        ),
        b"default",
    ],
)
def test_enqueue_refuses_a_bad_queue(producer: Producer, conn: redis.Redis, name: Any) -> None:
    with pytest.raises(ConfigError) as info:
        producer.enqueue("worker.examples.noop", queue=name)
    assert "\n" not in str(info.value)
    assert repr(name) in str(info.value)
    assert conn.dbsize() == 0


queue_names = st.one_of(st.text(max_size=70), st.from_regex(r"[A-Za-z0-9._-]{1,70}", fullmatch=True))


@hypothesis_settings(50)
@given(name=queue_names)
@example(name="")
@example(name="a")
@example(name="x" * 64)
@example(name="9.-_")
def test_any_text_as_queue_is_refused_or_used_exactly(
    redis_url: str, producer: Producer, conn: redis.Redis, name: str
) -> None:
    conn.flushall()  # examples share the test's Redis
    before = conn.dbsize()
    _, refused = attempt(lambda: Producer(redis_url, queue=name), ConfigError)
    # Refused exactly when the name is not a documented queue name.
    assert (refused is None) == bool(DOCUMENTED_QUEUE_NAME.fullmatch(name)), (name, refused)
    if refused is not None:
        assert "\n" not in str(refused)
        assert repr(name) in str(refused)
    job, also_refused = attempt(lambda: producer.enqueue("worker.examples.noop", queue=name), ConfigError)
    assert (also_refused is None) == (refused is None), "enqueue(queue=) and Producer(queue=) disagree"
    if also_refused is not None:
        assert "\n" not in str(also_refused)
        assert conn.dbsize() == before
        return
    assert job.origin == name
    assert conn.lrange(f"rq:queue:{name}", 0, -1) == [job.id.encode()]


@hypothesis_settings(50)
@given(raw=st.text(max_size=80) | st.lists(queue_names, max_size=4).map(",".join))
@example(raw="")
@example(raw=" ")
@example(raw=",")
@example(raw="high, default ,low")
@example(raw="a,a")
def test_any_task_queues_value_is_refused_with_one_line_or_parsed(raw: str) -> None:
    parsed, refused = attempt(lambda: Settings.from_env({"TASK_QUEUES": raw}), ConfigError)
    names = [part.strip() for part in raw.split(",") if part.strip()]
    valid = all(DOCUMENTED_QUEUE_NAME.fullmatch(q) for q in names) and len(set(names)) == len(names)
    # Accepted exactly when every listed name is valid and listed once (blank: the default queue).
    assert (refused is None) == (valid and (bool(names) or not raw.strip())), (raw, refused)
    if refused is not None:
        assert "\n" not in str(refused)
        assert "TASK_QUEUES" in str(refused)
        return
    assert parsed.queues == (tuple(names) if names else ("default",))
    assert all(DOCUMENTED_QUEUE_NAME.fullmatch(q) for q in parsed.queues)
    assert len(set(parsed.queues)) == len(parsed.queues)


def test_task_worker_refuses_bad_queues_with_one_line_and_exit_2(
    env: dict[str, str], conn: redis.Redis, tmp_path: Path
) -> None:
    bad_env = [",", "a b", "a,a", "é", "x" * 65, "default,bad name"]
    commands = [["task-worker", "--burst"] for _ in bad_env] + [["task-worker", "--burst", "--queue", "a:b"]]
    envs = [{"TASK_QUEUES": value} for value in bad_env] + [{}]
    results = run_all(commands, env, tmp_path, envs=envs)
    for result in results:
        assert result.returncode == 2, (result.args, result.stderr)
        line = one_error_line(result.stderr, "task-worker")
        assert "TASK_QUEUES" in line or "--queue" in line
        assert result.stdout == ""
    assert conn.dbsize() == 0


def test_task_producer_refuses_an_empty_queue_option(env: dict[str, str], conn: redis.Redis, tmp_path: Path) -> None:
    (result,) = run_all([["task-producer", "enqueue", "worker.examples.noop", "--queue", ""]], env, tmp_path)
    assert conn.dbsize() == 0
    assert result.returncode == 2, result.stdout
    one_error_line(result.stderr, "task-producer")


# ----------------------------------------------------------------- 5. garbage or foreign data under our keys

VALID_DATA = zlib.compress(json.dumps(["worker.examples.record", None, ["bad-ran", "bad"], {}]).encode())
"""A well-formed payload for the garbage job: it records into ``bad-ran`` when a worker runs it."""


def _bad_job(fields: dict[str, Any]) -> Callable[[redis.Redis], None]:
    def plant(conn: redis.Redis) -> None:
        conn.hset("rq:job:bad", mapping=fields)
        conn.rpush("rq:queue:default", "bad")

    return plant


def _replace(key: str, value: str) -> Callable[[redis.Redis], None]:
    def plant(conn: redis.Redis) -> None:
        conn.delete(key)
        conn.set(key, value)

    return plant


@dataclass(frozen=True)
class Garbage:
    id: str
    plant: Callable[[redis.Redis], object]
    key: str = ""  # what a failure message must name
    good_queue: str = "default"  # where the good jobs around the garbage go
    bad_job: str | None = None  # a job id the worker pops that is garbage
    set_aside: bool = False  # a key RQ's worker writes: the worker moves the foreign data aside and goes on
    wrong_type: bool = False  # ``key`` holds another Redis type: ``status`` refuses, naming it (else it answers)


GARBAGE = [
    Garbage(
        "queue-not-a-list",
        _replace("rq:queue:default", "garbage"),
        key="rq:queue:default",
        good_queue="other",
        wrong_type=True,
    ),
    Garbage("queue-entry-without-job", lambda c: c.rpush("rq:queue:default", "ghost")),
    Garbage(
        "job-data-not-zlib-json",
        _bad_job({"data": b"\x00garbage\xff", "status": "queued", "origin": "default"}),
        bad_job="bad",
    ),
    Garbage("job-hash-without-data", _bad_job({"status": "queued", "origin": "default"}), bad_job="bad"),
    Garbage(
        "job-status-invalid",
        _bad_job({"data": VALID_DATA, "status": "bogus", "origin": "default"}),
        bad_job="bad",
    ),
    Garbage(
        "job-timeout-invalid",
        _bad_job({"data": VALID_DATA, "status": "queued", "origin": "default", "timeout": "abc"}),
        bad_job="bad",
    ),
    Garbage(
        "job-created-at-invalid",
        _bad_job({"data": VALID_DATA, "status": "queued", "origin": "default", "created_at": "yesterday"}),
        bad_job="bad",
    ),
    Garbage(
        "job-key-not-a-hash",
        lambda c: (c.set("rq:job:bad", "x"), c.rpush("rq:queue:default", "bad")),
        bad_job="bad",
    ),
    Garbage("job-without-origin", _bad_job({"data": VALID_DATA, "status": "queued"}), bad_job="bad"),
    Garbage(
        "job-origin-mismatch",
        _bad_job({"data": VALID_DATA, "status": "queued", "origin": "elsewhere"}),
        bad_job="bad",
    ),
    Garbage(
        "workers-not-a-set",
        _replace("rq:workers", "x"),
        key="rq:workers",
        set_aside=True,
        wrong_type=True,
    ),
    Garbage("workers-junk-members", lambda c: c.sadd("rq:workers", "junk", "rq:worker:ghost", "")),
    Garbage(
        "workers-member-wrong-type",
        lambda c: (c.set("rq:worker:str", "x"), c.sadd("rq:workers", "rq:worker:str")),
        key="rq:worker:str",
        wrong_type=True,
    ),
    Garbage("workers-member-not-utf8", lambda c: c.sadd("rq:workers", b"\xff\xfe")),
    Garbage(
        "worker-hash-garbage",
        lambda c: (
            c.hset("rq:worker:fake", mapping={"last_heartbeat": "garbage", "queues": "default", "state": "busy"}),
            c.hset("rq:worker:fake", mapping={"pid": "x", "birth": "nope", "current_job": "nope"}),
            c.sadd("rq:workers", "rq:worker:fake"),
            c.sadd("rq:workers:default", "rq:worker:fake"),
        ),
    ),
    Garbage("queues-member-not-utf8", lambda c: c.sadd("rq:queues", b"rq:queue:\xff")),
    Garbage(
        "autoscaler-not-a-hash",
        _replace("task-processor:autoscaler:task-processor", "x"),
        key="task-processor:autoscaler:task-processor",
        wrong_type=True,
    ),
    Garbage(
        "autoscaler-garbage-fields",
        lambda c: c.hset("task-processor:autoscaler:task-processor", mapping={"desired": "lots", "reason": "?"}),
        key="task-processor:autoscaler:task-processor",
    ),
    Garbage(
        "wip-not-a-zset",
        _replace("rq:wip:default", "x"),
        key="rq:wip:default",
        set_aside=True,
        wrong_type=True,
    ),
    Garbage(
        "wip-junk-members",
        lambda c: c.zadd("rq:wip:default", {"junk": time.time() + 1000, "old-junk": 1, "x:y": 2, "": 3}),
    ),
    Garbage(
        "wip-member-not-utf8",
        lambda c: c.zadd("rq:wip:default", {b"\xff\xfe": 1}),
    ),
    Garbage(
        "intermediate-member-not-utf8",
        lambda c: c.rpush("rq:queue:default:intermediate", "ghost", b"\xff"),
    ),
]


GARBAGE_CASES = [pytest.param(case, id=case.id) for case in GARBAGE]


def wrong_type_message(url: str, key: str) -> str:
    """What ``status`` and the API say about a key holding a type RQ never writes there: the key and the fix."""
    return (
        f"Redis at {url}: key {key!r} holds data RQ did not write there (WRONGTYPE Operation against a key "
        "holding the wrong kind of value): rename or delete that key (the README lists the keys this project uses)"
    )


@pytest.mark.parametrize("case", GARBAGE_CASES)
def test_status_answers_through_garbage_or_names_the_wrong_key(
    producer: Producer, conn: redis.Redis, redis_url: str, env: dict[str, str], tmp_path: Path, case: Garbage
) -> None:
    """Garbage values (junk members, unreadable jobs, bad fields) are skipped and ``status`` answers; a key of
    the wrong type is refused with exit 1 and one line naming that key, never blamed on the network."""
    producer.enqueue("worker.examples.noop", queue="other")
    case.plant(conn)
    before = snapshot(conn)
    table, as_json = run_all([["task-producer", "status"], ["task-producer", "status", "--json"]], env, tmp_path)
    stats, api_error = attempt(producer.stats, TaskProcessorError)
    if case.wrong_type:
        for result in (table, as_json):
            assert (result.returncode, result.stdout) == (1, ""), (result.returncode, result.stdout)
            line = one_error_line(result.stderr, "task-producer")
            assert line == f"task-producer: error: {wrong_type_message(redis_url, case.key)}"
    else:
        assert (table.returncode, table.stderr, as_json.returncode, as_json.stderr) == (0, "", 0, ""), (
            table.stderr + as_json.stderr
        )
        facts = json.loads(as_json.stdout)
        assert facts["queues"]["other"]["queued"] == 1
        assert re.search(r"^other\s+1\s", table.stdout, re.M), table.stdout
        if case.id.startswith("autoscaler-"):  # a report the autoscaler did not write is no report
            assert facts["autoscaler"] is None
            assert "autoscaler: not running (no decision published in Redis)" in table.stdout
    # The API's stats read the queues and workers, not the autoscaler's report.
    if case.wrong_type and not case.id.startswith("autoscaler-"):
        assert isinstance(api_error, RedisCommandError), repr(api_error)
        assert str(api_error) == wrong_type_message(redis_url, case.key)
    else:
        assert api_error is None, str(api_error)
        assert stats["other"].queued == 1
    assert snapshot(conn) == before, "status wrote to Redis"


@pytest.mark.parametrize("case", GARBAGE_CASES)
def test_worker_survives_garbage_and_runs_the_good_jobs_around_it(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc], case: Garbage
) -> None:
    for i in range(3):
        producer.enqueue("worker.examples.record", "ran", f"before{i}", queue=case.good_queue)
    case.plant(conn)
    for i in range(3):
        producer.enqueue("worker.examples.record", "ran", f"after{i}", queue=case.good_queue)
    worker = spawn("task-worker", "--burst", "--queue", "default", "--queue", "other")
    code = worker.wait(timeout=30)
    output = worker.output()
    unstructured = [line for line in output.splitlines() if line.strip() and not line.startswith("{")]
    assert code == 0, output[-3000:]
    assert unstructured == [], output[-3000:]
    assert not [line for line in worker.json_lines() if "unhandled exception" in line.get("event", "")], output[-3000:]
    # Every good job ran, once, in order.
    assert recorded(conn, "ran") == [f"before{i}" for i in range(3)] + [f"after{i}" for i in range(3)]
    if case.set_aside:  # kept for whoever put it there, out of RQ's way, and the move logged naming the key
        assert conn.get(f"task-processor:foreign:{case.key}") == b"x"
        assert [line["key"] for line in worker.json_lines() if line.get("moved_to")] == [case.key]
    if case.bad_job is None:
        return
    mine = [line for line in job_lines(worker) if line["job_id"] == case.bad_job]
    assert len(mine) <= 1, mine
    # Nothing left where a worker or the reaper would pick the garbage job up again.
    for queue in ("default", "other", "elsewhere"):
        for key in (f"rq:queue:{queue}", Queue(queue, connection=conn).intermediate_queue_key):
            if conn.type(key) == b"list":
                assert case.bad_job.encode() not in conn.lrange(key, 0, -1), key
    # Skipped silently (it is not a job), or failed with an error that says what is wrong.
    if mine and mine[0]["outcome"] == "failed":
        assert ERROR_WITH_MESSAGE.match(mine[0]["error"]), mine[0]["error"]


def test_enqueue_many_onto_a_broken_queue_writes_nothing(producer: Producer, conn: redis.Redis) -> None:
    conn.set("rq:queue:broken", "garbage")
    before = snapshot(conn)
    with pytest.raises(TaskProcessorError) as info:
        producer.enqueue_many(
            [Task("worker.examples.noop", job_id="good", queue="fine"), Task("worker.examples.noop", queue="broken")]
        )
    # "Either every task is queued or none is", and nothing half-written that no worker will ever run.
    assert snapshot(conn) == before, sorted(conn.keys("*"))
    assert "\n" not in str(info.value)
    assert "rq:queue:broken" in str(info.value)
    assert "cannot reach Redis" not in str(info.value)


# ------------------------------------------------------------------------------- 6. job deleted mid-flight


@pytest.mark.timeout(100)
@pytest.mark.parametrize(
    ("func", "args"),
    [("worker.examples.sleep", (1.0,)), ("worker.examples.record", ("ran", "slow", 1.0))],
    ids=["sleep", "record"],
)
def test_a_job_deleted_while_running_fails_wait_and_spares_the_worker(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc], func: str, args: tuple[Any, ...]
) -> None:
    running = producer.enqueue(func, *args)
    after = producer.enqueue("worker.examples.record", "ran", "next")
    worker = spawn("task-worker", "--burst")
    wait_for(
        lambda: running.id in StartedJobRegistry("default", connection=conn).get_job_ids(),
        what="the slow job to start",
    )
    # The worker is frozen while the job is gone: its end would write the job's status again, and wait() must
    # notice the deletion itself (a WaitTimeoutError, or the job's result, is not noticing).
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        conn.delete(running.key)
        with pytest.raises(TaskFailedError) as info:
            producer.wait([running], timeout=60)
    finally:
        os.killpg(worker.pid, signal.SIGCONT)
    assert info.value.job_id == running.id
    assert str(info.value) == (
        f"job {running.id} no longer exists in Redis (deleted, or its result expired before the wait)"
    )
    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]
    assert producer.wait([after], timeout=5) == ["next"]
    assert recorded(conn, "ran")[-1] == "next"
    assert all(line.startswith("{") for line in worker.output().splitlines() if line.strip())
    assert [line["outcome"] for line in job_lines(worker)] == ["finished", "finished"]


# --------------------------------------------------------------------- 7. wrong password, TLS, bad Redis URLs

PASSWORD = "s3cret-pw"
WRONG = "wrong-pw-77"
DEADLINE = 60.0
"""Seconds after which a command still running counts as hung: generous, only a hang reaches it."""


@pytest.fixture
def auth_redis() -> Any:
    """A dedicated redis-server that requires PASSWORD."""
    with LocalRedisServer(appendonly=False) as server:
        redis.Redis(port=server.port).config_set("requirepass", PASSWORD)
        yield server


@dataclass(frozen=True)
class BadUrl:
    url: str  # {port}: the password-protected server; {closed}: a port nothing listens on
    shown: str  # the URL as every message must show it
    fix: str  # regex: what the line must say to fix


BAD_URLS = [
    pytest.param(
        BadUrl(
            f"redis://:{WRONG}@127.0.0.1:{{port}}/0",
            "redis://:***@127.0.0.1:{port}/0",
            r"refused the credentials: fix the password in REDIS_URL",
        ),
        id="wrong-password",
    ),
    pytest.param(
        BadUrl(
            "redis://127.0.0.1:{port}/0",
            "redis://127.0.0.1:{port}/0",
            r"refused the credentials: fix the password in REDIS_URL",
        ),
        id="missing-password",
    ),
    pytest.param(
        BadUrl(
            f"rediss://:{PASSWORD}@127.0.0.1:{{closed}}/0",
            "rediss://:***@127.0.0.1:{closed}/0",
            r"cannot reach Redis at .*: start redis-server there or point REDIS_URL at one",
        ),
        id="tls-closed-port",
    ),
    pytest.param(
        BadUrl(
            f"rediss://:{PASSWORD}@127.0.0.1:{{port}}/0",
            "rediss://:***@127.0.0.1:{port}/0",
            r"(TLS|SSL).*(redis://|not)",
        ),
        id="tls-to-plain-server",
    ),
    pytest.param(
        BadUrl(
            f"redis://:{PASSWORD}@127.0.0.1:notaport/0",
            "redis://:***@127.0.0.1:notaport/0",
            r"malformed.*fix REDIS_URL",
        ),
        id="port-not-a-number",
    ),
    pytest.param(
        BadUrl(
            f"redis://:{PASSWORD}@[::1]:{{closed}}/0",
            "redis://:***@[::1]:{closed}/0",
            r"cannot reach Redis",
        ),
        id="ipv6-host",
    ),
    pytest.param(
        BadUrl(
            f"redis://:{PASSWORD}@127.0.0.1:{{port}}/99",
            "redis://:***@127.0.0.1:{port}/99",
            r"DB index is out of range.*(database|db|/99)",
        ),
        id="db-out-of-range",
    ),
]


def test_the_probe_fails_on_refused_credentials(auth_redis: LocalRedisServer, env: dict[str, str]) -> None:
    """Unlike an outage (the probe passes: a restart cannot fix Redis), a refused password fails it: a restarted
    container reads the Secret again, which is how a rotated password reaches the workers."""
    result = run(["task-worker", "check"], {**env, "REDIS_URL": f"redis://:{WRONG}@127.0.0.1:{auth_redis.port}/0"})
    assert result.returncode != 0
    assert "refused the credentials" in one_error_line(result.stderr, "task-worker")
    assert WRONG not in result.stdout + result.stderr


@pytest.mark.timeout(DEADLINE + 30)
@pytest.mark.parametrize("bad", BAD_URLS)
def test_bad_redis_url_is_one_masked_line_from_every_command(
    auth_redis: LocalRedisServer, env: dict[str, str], tmp_path: Path, bad: BadUrl
) -> None:
    closed = free_port()
    url = bad.url.format(port=auth_redis.port, closed=closed)
    shown = bad.shown.format(port=auth_redis.port, closed=closed)
    admin = redis.Redis(port=auth_redis.port, password=PASSWORD)
    before = snapshot(admin)

    api_error: list[BaseException] = []

    def call_api() -> None:
        try:
            Producer(url).enqueue("worker.examples.noop")
        except BaseException as exc:
            api_error.append(exc)

    api = threading.Thread(target=call_api, daemon=True)
    api.start()
    results = run_all(
        [["task-producer", "status"], ["task-producer", "enqueue", "worker.examples.noop"], ["task-worker", "--burst"]],
        {**env, "REDIS_URL": url},
        tmp_path,
        timeout=DEADLINE,
    )
    api.join(timeout=max(0.1, DEADLINE - max(r.seconds for r in results)))

    for result in results:
        assert result.returncode is not None, f"{result.args} still running after {DEADLINE}s"
        assert result.returncode == 1, (result.args, result.returncode, result.stderr)
        line = one_error_line(result.stderr, result.args[0])
        assert PASSWORD not in result.stdout + result.stderr
        assert WRONG not in result.stdout + result.stderr
        assert shown in line, line
        assert re.search(bad.fix, line), line
    assert not api.is_alive(), f"Producer.enqueue still blocked after {DEADLINE}s"
    assert len(api_error) == 1
    assert isinstance(api_error[0], RedisUnavailableError), repr(api_error[0])
    message = str(api_error[0])
    assert "\n" not in message
    assert PASSWORD not in message
    assert WRONG not in message
    assert shown in message, message
    assert snapshot(admin) == before
