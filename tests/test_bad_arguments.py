"""Bad input, task arguments JSON cannot carry: every value JSON can carry (including edge values: 500 levels
deep, 4300-digit integers, lone surrogates) round-trips exactly through a real worker, and anything else (a set,
bytes, NaN, a non-string dict key, a circular reference, nesting past 500 levels) is refused at enqueue with ONE
line naming where in the arguments it sits, and nothing written.

The other kinds of bad input, and what these modules share: tests/bad_input.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import example, given
from hypothesis import strategies as st
from rq.job import Job

from producer import InvalidTaskError, Producer, Task
from tests.bad_input import (
    hypothesis_settings,
    live_worker_fixture,  # noqa: F401  (the live_worker fixture)
)
from tests.conftest import Proc


def strict_repr(value: Any) -> str:
    """``repr`` tells 1 from 1.0 from True and -0.0 from 0.0, and keeps dict order: equality for a round trip."""
    return repr(value)


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
            others: dict[str, Any] = draw(
                st.dictionaries(st.text(max_size=5).filter(step.__ne__), json_values, max_size=2)
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
@example(call=((1.5, float("nan")), {}, "argument 2 is nan"))
@example(call=((), {"x": float("-inf")}, "keyword argument 'x' is -inf"))
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
