"""What a task must be before anything is written: a path a worker can import, arguments JSON carries
faithfully, a payload Redis can afford. Each refusal is one InvalidTaskError naming the argument and the fix."""

from __future__ import annotations

import inspect
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rq.serializers import Serializer

from producer.errors import InvalidTaskError
from task_processor.taskmodules import outside_modules

FUNC_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
"""A dotted path with at least a module and a name: what a worker can import."""

RETRY_BACKOFF_CAP = 3600
"""Longest wait between two attempts, in seconds."""


def func_path(func: str | Callable[..., Any]) -> str:
    """The dotted import path a worker will resolve, refusing what no worker could import."""
    if callable(func) and not isinstance(func, str):
        module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
        path = f"{module}.{qualname}"
        if not module or module == "__main__" or inspect.ismethod(func) or not FUNC_PATH.fullmatch(path):
            raise InvalidTaskError(
                f"{func!r} cannot be imported by a worker (a lambda, method, partial, callable object, nested or "
                "__main__ function): define a function at module level, or pass its dotted path as a string"
            )
        return path
    if not isinstance(func, str) or not FUNC_PATH.fullmatch(func):
        raise InvalidTaskError(
            f"task function {func!r} is not a dotted path like 'myapp.tasks.resize': "
            "give the module path and the function name"
        )
    return func


class TaskPaths:
    """``func_path`` and then ``outside_modules`` for a task's function, as ``Producer.prepare`` checks it; a
    dotted path (a str) that passed both is remembered, so the next task naming it is not checked again. A
    refusal is never remembered: each one raises the same error."""

    MAX_PATHS = 4096

    def __init__(self) -> None:
        self._known: tuple[tuple[str, ...], set[str]] = ((), set())
        """The modules and the paths that passed against exactly them (one tuple, replaced whole)."""

    def check(self, func: str | Callable[..., Any], modules: tuple[str, ...]) -> str:
        """The path a worker will import; InvalidTaskError when it cannot, or when it lies outside ``modules``."""
        known = self._known
        if type(func) is str and known[0] is modules and func in known[1]:
            return func
        path = func_path(func)
        if modules and (problem := outside_modules(path, modules)):
            raise InvalidTaskError(problem)
        if type(func) is str:
            if known[0] is not modules or len(known[1]) >= self.MAX_PATHS:
                known = self._known = (modules, set())
            known[1].add(func)
        return path


def check_timeout(path: str, timeout: Any) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise InvalidTaskError(f"{path}: timeout {timeout!r} must be a whole number of seconds >= 1")


MAX_JSON_DEPTH = 500
"""Deepest nesting of lists and dicts an argument may have: JSON carries it, and a worker decodes it safely."""

_LEAVING = object()
"""Marks, on the walk's stack, the point where a container's children are done (it is no longer an ancestor)."""


def _render(node: tuple[Any, str]) -> str:
    """A path like ``argument 1[0]['x']`` from a chain of (parent, step); a long one keeps its ends."""
    steps: list[str] = []
    while node is not None:
        node, step = node
        steps.append(step)
    steps.reverse()
    if len(steps) > 12:
        steps = [*steps[:8], f"...({len(steps) - 11} more)...", *steps[-3:]]
    return "".join(steps)


def _json_problem(value: Any, where: str) -> str | None:
    """Describe the first part of ``value`` that JSON would refuse or silently change, or None.

    A walk with its own stack rather than recursion, so a circular or very deep argument is named, not a
    RecursionError; children are visited in order, so the first problem found is the first in the argument.
    """
    max_digits = sys.get_int_max_str_digits()
    ancestors: set[int] = set()
    stack: list[tuple[Any, Any, int]] = [(value, (None, where), 0)]
    while stack:
        item, node, depth = stack.pop()
        if item is _LEAVING:
            ancestors.discard(node)
        elif item is None or isinstance(item, str | bool):
            continue
        elif isinstance(item, int):
            if max_digits and item.bit_length() > 3 * max_digits and abs(item) >= 10**max_digits:
                return f"{_render(node)} is an integer of more than {max_digits} digits, which JSON cannot carry"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{_render(node)} is {item!r}, which JSON cannot carry"
        elif isinstance(item, list | tuple | dict):
            if id(item) in ancestors:
                return f"{_render(node)} contains itself (a circular reference), which JSON cannot carry"
            if depth >= MAX_JSON_DEPTH:
                return f"{_render(node)} nests deeper than {MAX_JSON_DEPTH} levels of lists and dicts"
            ancestors.add(id(item))
            stack.append((_LEAVING, id(item), depth))
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        kind = type(key).__name__
                        return f"{_render(node)} has the key {key!r} of type {kind}; JSON keys must be strings"
                children = [(child, (node, f"[{key!r}]"), depth + 1) for key, child in item.items()]
            else:
                children = [(child, (node, f"[{i}]"), depth + 1) for i, child in enumerate(item)]
            stack.extend(reversed(children))
        else:
            return f"{_render(node)} is a {type(item).__name__}, which JSON cannot carry"
    return None


def _named(args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Each argument with the name an error message gives it."""
    return [(f"argument {i + 1}", v) for i, v in enumerate(args)] + [
        (f"keyword argument {k!r}", v) for k, v in kwargs.items()
    ]


_PLAIN_JSON = frozenset({str, bool, type(None)})
"""Types of an argument JSON always carries faithfully (exactly these types: a subclass may encode otherwise)."""


def _plain(value: Any) -> bool:
    kind = type(value)
    return kind in _PLAIN_JSON or (kind is int and -(2**63) < value < 2**63) or (kind is float and math.isfinite(value))


def check_json_arguments(path: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    if all(map(_plain, args)) and all(map(_plain, kwargs.values())):
        return  # nothing _json_problem could refuse
    for where, value in _named(args, kwargs):
        if problem := _json_problem(value, where):
            raise InvalidTaskError(
                f"{path}: {problem}: pass plain data (str, int, float, bool, None, lists, dicts with string "
                "keys), or set TASK_SERIALIZER=pickle on producers and workers"
            )


def check_json_value(path: str, where: str, value: Any) -> None:
    """One value (a job's ``meta``) as ``check_json_arguments`` checks each argument."""
    if problem := _json_problem(value, where):
        raise InvalidTaskError(
            f"{path}: {problem}: pass plain data (str, int, float, bool, None, lists, dicts with string keys), or "
            "set TASK_SERIALIZER=pickle on producers and workers"
        )


def check_payload_size(
    path: str, args: Sequence[Any], kwargs: Mapping[str, Any], serializer: Serializer, limit: int
) -> None:
    """Refuse arguments whose serialized size is over ``limit`` bytes (0: no limit), naming the largest."""
    if not limit:
        return
    size = len(serializer.dumps([list(args), dict(kwargs)]))
    if size <= limit:
        return
    sizes = [(where, len(serializer.dumps(value))) for where, value in _named(args, kwargs)]
    largest, largest_size = max(sizes, key=lambda pair: pair[1])
    raise InvalidTaskError(
        f"{path}: the arguments are too large: {size} bytes serialized ({largest} alone is {largest_size}), over "
        f"the limit TASK_MAX_PAYLOAD={limit}: pass a reference (a path, URL or key) to the data instead, or "
        "raise TASK_MAX_PAYLOAD"
    )


def backoff_intervals(retries: int, base: int) -> list[int]:
    return [min(base * 2**i, RETRY_BACKOFF_CAP) for i in range(retries)]
