"""Configuration from the environment: the one place that reads ``os.environ``.

Producer and worker share these settings so that both sides agree on the Redis URL, the queues and the
serializer; a mismatch there is the classic way to make a queue look stuck.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from rq.serializers import JSONSerializer, PickleSerializer, Serializer

from task_processor.errors import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
"""Where both sides look for Redis when REDIS_URL is not set."""

DEFAULT_QUEUE = "default"
"""The queue used when TASK_QUEUES is not set (RQ's own default name, so RQ tools find it)."""

DEFAULT_DEPLOYMENT = "task-processor"
"""Name of the worker Deployment the autoscaler sizes."""

DEFAULT_TASK_TIMEOUT = 180
"""Seconds a task may run before the worker stops it (RQ's default); the chart's grace period follows it."""

DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""Bytes a task's serialized arguments may take (TASK_MAX_PAYLOAD; 0 turns the check off): Redis holds every
queued task in memory and every worker reads it whole, so big data belongs elsewhere, passed by reference."""

QUEUE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Queue names end up inside Redis keys (``rq:queue:<q>``); ':' or spaces there would collide or confuse."""

MODULE_NAME_PATTERN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
"""A module's dotted name, as TASK_MODULES lists them."""

DEFAULT_METRICS_BIND = "127.0.0.1"
"""Where /metrics listens when METRICS_BIND is not set: this machine only (the chart sets the Pod's address)."""

SERIALIZERS: dict[str, Serializer] = {"json": JSONSerializer, "pickle": PickleSerializer}
"""JSON by default: pickle executes code on load, so it crosses the trust boundary only when chosen."""

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

T = TypeVar("T")


def validate_queue_name(name: str, source: str = "queue") -> str:
    """Return ``name`` when it is usable as a queue name, else raise a one-line ConfigError."""
    if not isinstance(name, str) or not QUEUE_NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{source}: {name!r} is not a valid queue name: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def parse_queues(raw: str, source: str = "TASK_QUEUES") -> tuple[str, ...]:
    """A comma list of queue names, highest priority first (TASK_QUEUES, or a pool's queues annotation)."""
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not names:
        raise ConfigError(f"{source} is empty: give a comma-separated list such as 'high,default,low'")
    for name in names:
        validate_queue_name(name, source)
    if len(set(names)) != len(names):
        raise ConfigError(f"{source} lists a queue twice ({raw!r}): name each queue once")
    return names


def parse_modules(raw: str, source: str = "TASK_MODULES") -> tuple[str, ...]:
    """The comma-separated module names of TASK_MODULES, each checked as a dotted module name."""
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    for name in names:
        if not MODULE_NAME_PATTERN.fullmatch(name):
            raise ConfigError(
                f"{source}: {name!r} is not a module name: list dotted module names such as 'myapp.tasks', "
                "comma-separated"
            )
    return names


def _bind_address(name: str, raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not an IP address: use 127.0.0.1 (this machine only), the Pod's IP, or 0.0.0.0"
        ) from None
    return raw


def parse_number(name: str, raw: str, kind: Callable[[str], T], minimum: float) -> T:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number: set it to a {kind.__name__} >= {minimum:g}") from None
    if not math.isfinite(float(value)) or float(value) < minimum:  # type: ignore[arg-type]
        raise ConfigError(f"{name}={raw!r} is out of range: set it to a {kind.__name__} >= {minimum:g}")
    return value


def parse_target_wait(name: str, raw: str) -> float | None:
    """Seconds > 0, or ``off``: 0 would ask every job to start at once, which no fleet can promise."""
    if raw.lower() == "off":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"{name}={raw!r} is not a number of seconds > 0: set it to one (e.g. {name}=30), or to off to turn it off"
        )
    return value


def _redis_url(name: str, raw: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")):
        raise ConfigError(
            f"{name} must start with redis://, rediss://, unix:// or redis+sentinel:// (e.g. {DEFAULT_REDIS_URL})"
        )
    return raw


def parse_replica_acks(name: str, raw: str) -> int:
    """How many replicas must acknowledge an enqueue's write before it returns: a whole number >= 0."""
    if not (raw.isascii() and raw.isdigit()):
        raise ConfigError(
            f"{name}={raw!r} is not a number of replicas: set it to 0 (enqueues do not wait for replicas) or to how "
            f"many replicas must acknowledge each enqueue (e.g. {name}=1)"
        )
    return int(raw)


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r} is not supported: use one of {', '.join(choices)}")
    return raw


@dataclass(frozen=True)
class Settings:
    """Everything configurable through the environment; the README's table lists the same names."""

    redis_url: str = field(default=DEFAULT_REDIS_URL, repr=False)  # may carry a password: never in a repr
    redis_url_set: bool = False
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    serializer_name: str = "json"
    task_modules: tuple[str, ...] = ()
    task_timeout: int = DEFAULT_TASK_TIMEOUT
    max_payload: int = DEFAULT_MAX_PAYLOAD
    abandon_after: int = 30
    max_abandons: int = 3
    max_memory_mib: int | None = None
    deployment: str = DEFAULT_DEPLOYMENT
    namespace: str | None = None
    autoscale_min: int = 0
    autoscale_max: int = 10
    jobs_per_worker: int = 10
    autoscale_interval: float = 0.25
    scale_down_delay: float = 30.0
    manual_hold: float = 300.0
    target_wait: float | None = 30.0
    start_spares: int = 2
    pod_name: str | None = None
    pool: str | None = None
    """WORKER_POOL: the worker pool this worker belongs to (the chart sets it from the Pod's pool label)."""
    log_format: LogFormat = "auto"
    log_level: str = "INFO"
    metrics_port: int = 0
    metrics_bind: str = DEFAULT_METRICS_BIND
    cron_file: str | None = None
    """TASK_CRON: the file of periodic tasks (JSON lines) the leading autoscaler enqueues (producer/scaling/cron.py)."""
    replica_acks: int = 0
    """TASK_REPLICA_ACKS: replicas that must acknowledge an enqueue's write (Redis WAIT) before it returns."""

    @property
    def serializer(self) -> Serializer:
        return SERIALIZERS[self.serializer_name]

    @property
    def host(self) -> str:
        """This process's Pod name (POD_NAME, set from the downward API) or else the hostname."""
        return self.pod_name or socket.gethostname()

    def child_env(self, **overrides: str) -> dict[str, str]:
        """The environment for a worker process this one starts: ours, with these settings made explicit."""
        return {
            **os.environ,
            "TASK_QUEUES": ",".join(self.queues),
            "TASK_SERIALIZER": self.serializer_name,
            "TASK_MODULES": ",".join(self.task_modules),
            **overrides,
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable at once, so a typo fails at start-up rather than mid-run."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value is not None and value.strip() else None

        def opt(name: str, parse: Callable[[str, str], T], default: T) -> T:
            raw = get(name)
            return default if raw is None else parse(name, raw)

        def integer(minimum: int) -> Callable[[str, str], int]:
            return lambda name, raw: parse_number(name, raw, int, minimum)

        def real(minimum: float) -> Callable[[str, str], float]:
            return lambda name, raw: parse_number(name, raw, float, minimum)

        def one_of(choices: tuple[str, ...], case: Callable[[str], str]) -> Callable[[str, str], str]:
            return lambda name, raw: _choice(name, case(raw), choices)

        d = cls()
        redis_url = opt("REDIS_URL", _redis_url, None)
        return cls(
            redis_url=redis_url or d.redis_url,
            redis_url_set=redis_url is not None,
            queues=opt("TASK_QUEUES", lambda _, raw: parse_queues(raw), d.queues),
            serializer_name=opt("TASK_SERIALIZER", one_of(tuple(SERIALIZERS), str.lower), d.serializer_name),
            task_modules=opt("TASK_MODULES", lambda name, raw: parse_modules(raw, name), d.task_modules),
            task_timeout=opt("TASK_TIMEOUT", integer(1), d.task_timeout),
            max_payload=opt("TASK_MAX_PAYLOAD", integer(0), d.max_payload),
            abandon_after=opt("TASK_ABANDON_AFTER", integer(3), d.abandon_after),
            max_abandons=opt("TASK_MAX_ABANDONS", integer(0), d.max_abandons),
            max_memory_mib=opt("WORKER_MAX_MEMORY", integer(1), d.max_memory_mib),
            deployment=opt("WORKER_DEPLOYMENT", lambda _, raw: raw, d.deployment),
            namespace=opt("WORKER_NAMESPACE", lambda _, raw: raw, d.namespace),
            autoscale_min=opt("AUTOSCALE_MIN", integer(0), d.autoscale_min),
            autoscale_max=opt("AUTOSCALE_MAX", integer(1), d.autoscale_max),
            jobs_per_worker=opt("AUTOSCALE_JOBS_PER_WORKER", integer(1), d.jobs_per_worker),
            autoscale_interval=opt("AUTOSCALE_INTERVAL", real(0.05), d.autoscale_interval),
            scale_down_delay=opt("AUTOSCALE_SCALE_DOWN_DELAY", real(0), d.scale_down_delay),
            manual_hold=opt("AUTOSCALE_MANUAL_HOLD", real(0), d.manual_hold),
            target_wait=opt("AUTOSCALE_TARGET_WAIT", parse_target_wait, d.target_wait),
            start_spares=opt("AUTOSCALE_START_SPARES", integer(0), d.start_spares),
            pod_name=opt("POD_NAME", lambda _, raw: raw, d.pod_name),
            pool=opt("WORKER_POOL", lambda _, raw: raw, d.pool),
            log_format=opt("LOG_FORMAT", one_of(LOG_FORMATS, str.lower), d.log_format),  # type: ignore[arg-type]
            log_level=opt("LOG_LEVEL", one_of(LOG_LEVELS, str.upper), d.log_level),
            metrics_port=opt("METRICS_PORT", integer(0), d.metrics_port),
            metrics_bind=opt("METRICS_BIND", _bind_address, d.metrics_bind),
            cron_file=opt("TASK_CRON", lambda _, raw: raw, d.cron_file),
            replica_acks=opt("TASK_REPLICA_ACKS", parse_replica_acks, d.replica_acks),
        )
