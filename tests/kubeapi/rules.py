"""What tests arrange before requests arrive (faults, hooks, delays) and the log of what was served.

Tests add rules from their own thread while the server's loop thread takes them, so `Rules` guards its lists
with a lock; each rule counts down the requests it still applies to.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Rule:
    method: str | None
    path: re.Pattern[str]

    def matches(self, method: str, path: str) -> bool:
        """Whether the request is one this rule is about (whether it has uses left is `Rules.take`'s care)."""
        return self.method in (None, method) and self.path.search(path) is not None


@dataclass
class Fault(_Rule):
    """Answer the next `times` requests matching `method` and `path` (a regex, searched) with `status`."""

    status: int
    times: int = 1
    retry_after: int | None = None
    message: str | None = None
    hits: int = 0


@dataclass
class Hook(_Rule):
    """Run `callback()` before the next `times` matching requests are served (e.g. to race them)."""

    callback: Callable[[], object]  # what it returns is ignored
    times: int = 1


@dataclass
class Delay(_Rule):
    """Serve the next `times` matching requests `seconds` late, or never (`seconds=None`: the server hangs
    until the client closes the connection or the server stops). A late request is applied after the delay."""

    seconds: float | None
    times: int = 1
    hits: int = 0


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it, and the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any  # parsed JSON when the body was JSON, else its text ("" when empty)
    status: int
    headers: dict[str, str] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class Taken:
    """The rules one request triggered, each already counted down."""

    fault: Fault | None
    hooks: list[Hook]
    delay: Delay | None


class Rules:
    """Faults, hooks and delays (safe to add from any thread) and the request log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._hooks: list[Hook] = []
        self._delays: list[Delay] = []
        self.log: list[RecordedRequest] = []

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def add_hook(self, hook: Hook) -> Hook:
        with self._lock:
            self._hooks.append(hook)
        return hook

    def add_delay(self, delay: Delay) -> Delay:
        with self._lock:
            self._delays.append(delay)
        return delay

    def take(self, method: str, path: str) -> Taken:
        """The first matching fault and delay and every matching hook, counted down at once."""
        with self._lock:
            fault = next((f for f in self._faults if f.times > 0 and f.matches(method, path)), None)
            if fault is not None:
                fault.times -= 1
                fault.hits += 1
            delay = next((d for d in self._delays if d.times > 0 and d.matches(method, path)), None)
            if delay is not None:
                delay.times -= 1
                delay.hits += 1
            hooks = [h for h in self._hooks if h.times > 0 and h.matches(method, path)]
            for hook in hooks:
                hook.times -= 1
        return Taken(fault, hooks, delay)
