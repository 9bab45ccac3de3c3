"""structlog set up as its docs advise for production: every line structured, RQ's own logs included.

JSON lines when the stream is not a terminal (what log collectors read), a readable console format on one.
Context bound with ``structlog.contextvars`` (job id, queue, function) lands on every line of that job.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from worker.settings import LogFormat

QUIET_LOGGERS = ("rq", "redis", "urllib3", "kubernetes")
"""Libraries whose INFO chatter repeats what our own lines say; they log at WARNING unless LOG_LEVEL=DEBUG."""


def _shared_processors() -> list[structlog.typing.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(level: str = "INFO", fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging through one handler on ``stream`` (stdout by default)."""
    stream = stream or sys.stdout
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    final: list[structlog.typing.Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if as_json:
        final.append(structlog.processors.dict_tracebacks)
    final.append(renderer)

    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=_shared_processors(), processors=final))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_level = logging.DEBUG if level == "DEBUG" else max(logging.WARNING, logging.getLevelName(level))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet_level)

    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
