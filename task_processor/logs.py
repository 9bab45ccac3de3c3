"""structlog set up as its docs advise for production: every line structured, RQ's own logs included.

JSON lines when the stream is not a terminal (what log collectors read), a readable console format on one.
Context bound with ``structlog.contextvars`` (job id, queue, function) lands on every line of that job.

Our own lines take structlog's native path (processors, then one write), not the standard library's: a worker
writes a line per job, and ``logging``'s records, handlers and caller lookup cost several times the rendering.
Lines of libraries that log through ``logging`` (RQ, redis-py) are rendered the same way and written to the same
stream, under the same lock.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

import structlog

from task_processor.settings import LogFormat

EXCEPTIONS_WITHOUT_LOCALS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)
"""structlog's ``dict_tracebacks`` without the locals of each frame, which it shows by default: redis-py's
``on_connect`` holds the AUTH arguments, so a refused password would put the password in the log."""

QUIET_LOGGERS = ("rq", "redis", "urllib3", "kubernetes")
"""Libraries whose INFO chatter repeats what our own lines say; they log at WARNING unless LOG_LEVEL=DEBUG."""


class _Output:
    """The stream every line goes to, one whole line at a time. ``configure_logging`` may swap the stream
    (tests capture it); loggers made before then follow."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stdout
        self.level = logging.INFO
        self.lock = threading.Lock()

    def write(self, line: str) -> None:
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


_output = _Output()


class _Logger:
    """What structlog hands a rendered line to: our output, under the logger's name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, line: str) -> None:
        _output.write(line)

    debug = info = warning = error = critical = exception = msg


class _Handler(logging.Handler):
    """The standard library's records, rendered by structlog's formatter onto the same output."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _output.write(self.format(record))
        except Exception:
            self.handleError(record)


def _below_level(logger: Any, method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    if logging.getLevelName(method.upper()) < _output.level:
        raise structlog.DropEvent
    return event


def _shared_processors() -> list[structlog.typing.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(level: str = "INFO", fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Send our lines and the standard library's to ``stream`` (stdout by default), from ``level`` up."""
    _output.stream = stream or sys.stdout
    _output.level = logging.getLevelName(level)
    as_json = fmt == "json" or (fmt == "auto" and not _output.stream.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=_output.stream.isatty())
    )
    tracebacks = [EXCEPTIONS_WITHOUT_LOCALS] if as_json else []

    handler = _Handler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tracebacks, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_level = logging.DEBUG if level == "DEBUG" else max(logging.WARNING, logging.getLevelName(level))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet_level)

    structlog.configure(
        processors=[
            _below_level,
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            *tracebacks,
            renderer,
        ],
        logger_factory=_Logger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
