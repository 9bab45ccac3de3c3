"""Errors shared by both sides. Each message is one line that names the problem and the fix."""

from __future__ import annotations

import sys
from typing import TextIO


class TaskProcessorError(Exception):
    """Base of every error this project raises on purpose; the CLIs print these as one line."""


class ConfigError(TaskProcessorError, ValueError):
    """A setting (environment variable or option) has a value we cannot use."""


class RedisUnavailableError(TaskProcessorError, ConnectionError):
    """Redis cannot be reached or refuses us; the message carries the URL without its password."""


class RedisCommandError(TaskProcessorError):
    """Redis refused a command: usually data under one of RQ's keys that RQ did not write."""


def first_line(exc: BaseException) -> str:
    """An exception as one log field: the first line of its message, or its type when it has none."""
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__


def exit_with(program: str, exc: TaskProcessorError, out: TextIO | None = None) -> int:
    """Print ``exc`` as the command's one error line (on ``out``, else the stderr of the moment) and return its exit
    code: 2 for bad input or settings (the user's to fix), 1 for anything else (Redis unreachable, a failed job)."""
    print(f"{program}: error: {exc}", file=out or sys.stderr)
    return 2 if isinstance(exc, ValueError) else 1


def undecodable_job(job_id: str, cause: BaseException | None) -> str:
    """Why a job's data cannot be read: written by another serializer, or not by RQ at all."""
    detail = f" ({type(cause).__name__}: {first_line(cause) if str(cause) else '-'})" if cause else ""
    return (
        f"cannot decode the data of job {job_id}{detail}: it was not written by a producer with this worker's "
        "TASK_SERIALIZER; use the same serializer on both sides, or delete the job"
    )
