"""TASK_MODULES: the trust boundary between what a job names and the code a worker runs.

A job is a dotted path in Redis, and anyone who can write to Redis (or any application that passes user input
into ``enqueue``) can plant one. RQ imports whatever the path names, so ``os.system`` or ``builtins.exec`` would
run. Here a path runs only when it resolves to a Python function defined in one of the allowed modules or their
submodules; unset, nothing runs (default deny).

The check is on what the path resolves to, not on its text: ``myapp.tasks.os.system`` starts inside
``myapp.tasks`` but is ``os.system``, and is refused. And a module outside the list is never imported, because
importing a module already runs its code: the walk from the allowed module imports a submodule only when its own
name is allowed, and otherwise only reads attributes of what is already loaded.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any, cast

from task_processor.errors import TaskProcessorError

_CACHE_SIZE = 4096
"""Resolved paths kept per process: a busy worker resolves the same few paths for every job."""


class TaskRefusedError(TaskProcessorError):
    """A job names code outside TASK_MODULES: it is failed without running anything, and never retried."""


class TaskNotFoundError(TaskProcessorError, ImportError):
    """A job names a function inside TASK_MODULES that the worker cannot import."""


def covers(modules: tuple[str, ...], module: str) -> bool:
    """Whether ``module`` is one of ``modules`` or a submodule of one."""
    return any(module == name or module.startswith(name + ".") for name in modules)


def outside_modules(path: str, modules: tuple[str, ...]) -> str | None:
    """Why the dotted ``path`` lies outside ``modules`` by its text alone (for producers, which may not have the
    task code to import), or None when it starts inside one of them."""
    if any(path.startswith(name + ".") for name in modules):
        return None
    return (
        f"{path!r} is outside TASK_MODULES={','.join(modules)}: workers run only functions defined in those "
        "modules; enqueue a function of one of them, or add its module to TASK_MODULES on producers and workers"
    )


class TaskModules:
    """The modules a worker may run functions of, and the resolution of job paths against them."""

    def __init__(self, modules: tuple[str, ...]) -> None:
        self.modules = modules
        self._resolved: dict[str, Callable[..., Any]] = {}

    def __repr__(self) -> str:
        return f"TaskModules({','.join(self.modules) or 'none'})"

    @property
    def setting(self) -> str:
        """How TASK_MODULES reads in a message."""
        return f"TASK_MODULES={','.join(self.modules)}" if self.modules else "TASK_MODULES is not set"

    def resolve(self, path: str) -> Callable[..., Any]:
        """The function ``path`` names, when it is defined inside TASK_MODULES.

        Raises TaskRefusedError (outside, or not a function) or TaskNotFoundError (inside, but not importable).
        """
        func = self._resolved.get(path)
        if func is None:
            func = self._resolve(path)
            if len(self._resolved) >= _CACHE_SIZE:
                self._resolved.clear()
            self._resolved[path] = func
        return func

    def refuse(self, path: str, why: str) -> TaskRefusedError:
        fix = (
            "add the module of the task to TASK_MODULES on the workers if it is yours, or delete the job"
            if self.modules
            else "set TASK_MODULES on the workers to the modules of your tasks (e.g. TASK_MODULES=myapp.tasks)"
        )
        return TaskRefusedError(f"refused to run {path!r}: {why}; {self.setting}: {fix}")

    def _resolve(self, path: str) -> Callable[..., Any]:
        parts = path.split(".")
        if len(parts) < 2 or not all(part.isidentifier() for part in parts):
            raise self.refuse(path, "not a dotted path to a function")
        root = next((i for i in range(1, len(parts)) if covers(self.modules, ".".join(parts[:i]))), None)
        if root is None:
            raise self.refuse(path, "its module is not in TASK_MODULES")
        obj: Any = self._import(path, ".".join(parts[:root]))
        for part in parts[root:]:
            obj = self._step(path, obj, part)
        func = obj.__func__ if inspect.ismethod(obj) else obj
        if not inspect.isfunction(func):
            raise self.refuse(path, f"it resolves to {_describe(obj)}, not a function")
        where = f"{func.__module__}.{func.__qualname__}"
        if not isinstance(func.__module__, str) or not covers(self.modules, func.__module__):
            raise self.refuse(path, f"it resolves to {where}, defined outside TASK_MODULES")
        return cast(Callable[..., Any], obj)

    def _step(self, path: str, obj: Any, part: str) -> Any:
        """One attribute further along ``path``: a submodule is imported only when its own name is allowed."""
        if isinstance(obj, ModuleType) and not hasattr(obj, part):
            submodule = f"{obj.__name__}.{part}"
            if not covers(self.modules, submodule):
                raise self.refuse(path, f"it leads into the module {submodule!r}, outside TASK_MODULES")
            return self._import(path, submodule)
        try:
            return getattr(obj, part)
        except AttributeError:
            raise TaskNotFoundError(
                f"cannot import task function {path!r} ({_describe(obj)} has no attribute {part!r}): check the "
                "dotted path and that its module is installed where the workers run"
            ) from None

    @staticmethod
    def _import(path: str, module: str) -> ModuleType:
        try:
            return importlib.import_module(module)
        except Exception as exc:
            raise TaskNotFoundError(
                f"cannot import task function {path!r} ({type(exc).__name__}: {exc}): check the dotted path and "
                "that its module is installed where the workers run"
            ) from exc

    def preload(self) -> list[str]:
        """Import every allowed module now; the problems, one line each (a worker warns and goes on)."""
        problems = []
        for module in self.modules:
            try:
                importlib.import_module(module)
            except Exception as exc:
                problems.append(f"{module}: {type(exc).__name__}: {exc}")
        return problems


def _describe(obj: Any) -> str:
    if isinstance(obj, ModuleType):
        return f"the module {obj.__name__}"
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    module = getattr(obj, "__module__", None)
    kind = "class" if inspect.isclass(obj) else type(obj).__name__
    return f"{module}.{name} (a {kind})" if module else f"{name} (a {kind})"
