"""``enqueue --from-file``: tasks as JSON lines, all checked before the first one is enqueued.

One object per line: ``{"func": "myapp.tasks.resize", "args": ["a.png"], "kwargs": {"width": 640}}``, with the
optional keys ``queue``, ``job_id``, ``timeout``, ``retries``, ``retry_backoff``, ``at_front`` and the job options
(``delay``, ``at`` as an ISO 8601 time with its offset, ``depends_on`` as an id or a list of ids, ``meta``,
``result_ttl``, ``failure_ttl``, ``ttl``, ``description``, ``on_success``, ``on_failure``, ``on_stopped``,
``unique``) meaning what they mean to ``Producer.enqueue``; the command line's options are the defaults for lines
without them. Blank lines are skipped. A bad line stops the command with its line number and
nothing is enqueued; a good file is enqueued in batches (each batch atomically, in one round trip).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any

from producer.api import Producer, Task
from task_processor.errors import ConfigError, TaskProcessorError
from task_processor.settings import validate_queue_name

BATCH = 500
"""Tasks per ``enqueue_many`` call: one atomic round trip each, small enough to keep Redis responsive."""

KEYS: dict[str, type | tuple[type, ...]] = {
    "func": str,
    "args": list,
    "kwargs": dict,
    "queue": str,
    "job_id": str,
    "timeout": int,
    "retries": int,
    "retry_backoff": int,
    "at_front": bool,
    "delay": (int, float),
    "at": str,
    "depends_on": (str, list),
    "meta": dict,
    "result_ttl": int,
    "failure_ttl": int,
    "ttl": int,
    "description": str,
    "on_success": str,
    "on_failure": str,
    "on_stopped": str,
    "unique": bool,
}
"""The keys a line may carry and the JSON type each must have (``func`` is required)."""


EXAMPLE = '{"func": "myapp.tasks.resize", "args": [1]}'


def json_object(text: str, example: str, flag: str = "") -> dict[str, Any]:
    """``text`` (a line of a file, or a ``flag``'s value) as a JSON object; ConfigError naming the problem, with an
    example."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        if flag:
            raise ConfigError(f"{flag} is not valid JSON ({exc}): pass an object, e.g. {example}") from None
        raise ConfigError(f"not valid JSON ({exc}): write one JSON object per line, e.g. {example}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{flag} must be a JSON object, e.g. {example}"
            if flag
            else f"expected a JSON object, e.g. {example}, got {text!r}"
        )
    return data


def task_from_json(text: str, defaults: dict[str, Any]) -> Task:
    """One line's task (``defaults`` for the keys it leaves out); ConfigError says what is wrong with it."""
    data = json_object(text, EXAMPLE)
    if "func" not in data:
        raise ConfigError('"func" is missing: name the task function by its dotted path')
    for key, value in data.items():
        kind = KEYS.get(key)
        if kind is None:
            raise ConfigError(f"unknown key {key!r}: use only {', '.join(KEYS)}")
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (int in kinds and isinstance(value, bool)):
            names: dict[tuple[type, ...], str] = {(int, float): "number", (str, list): "string or list of ids"}
            named = names.get(kinds, kinds[0].__name__)
            raise ConfigError(f"{key!r} must be a JSON {named}, not {json.dumps(value)}")
    if "queue" in data:
        validate_queue_name(data["queue"], '"queue"')
    if "at" in data:
        data["at"] = parse_time(data["at"], '"at"')
    return Task(**{**defaults, **data})


def parse_time(text: str, name: str) -> datetime:
    """An ISO 8601 time (``2027-01-01T09:00:00+01:00``, or ``Z`` for UTC); one without an offset is refused later,
    by the enqueue's own check, with the fix."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{name} {text!r} is not an ISO 8601 time: use e.g. 2027-01-01T09:00:00Z") from None


def read_tasks(stream: IO[str], producer: Producer, defaults: dict[str, Any] | None = None) -> list[Task]:
    """Every task of the file, each checked as ``enqueue`` would check it; ConfigError names the first bad line.

    ``defaults`` holds ``Task`` fields for the lines that leave them out (what the command line gave)."""
    tasks = []
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            task = task_from_json(line, defaults or {})
            producer.prepare(task)
        except TaskProcessorError as exc:
            raise ConfigError(f"{getattr(stream, 'name', 'input')}, line {number}: {exc}") from None
        tasks.append(task)
    return tasks


def enqueue_in_batches(
    producer: Producer, tasks: list[Task], on_batch: Callable[[list[str]], None], size: int = BATCH
) -> None:
    """Enqueue ``tasks`` in order; ``on_batch`` gets each batch's job ids once Redis holds them."""
    for batch in _chunks(tasks, size):
        on_batch([job.id for job in producer.enqueue_many(batch)])


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
