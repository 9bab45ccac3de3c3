"""Redis behind Sentinel: the ``redis+sentinel://`` URL, and clients that follow the master across a failover.

redis-py's Sentinel support does the following: each connection of a ``SentinelConnectionPool`` (a pooled one, and one
made with ``pool.make_connection()`` for a private wire) asks the Sentinels for the master's address whenever it
connects, and a connection still on a demoted master drops itself on the first READONLY reply, so the command's
retry connects to the new master. What this module adds: the URL form every process reads from REDIS_URL, one log
line per process when the master moves (never with a password), and errors that say which part of the URL is wrong.

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db][?sentinel_password=...]

The user and password are the master's (and its replicas'); Sentinels that require a password of their own take it
from ``sentinel_password``. A Sentinel's port defaults to 26379.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from task_processor.errors import first_line
from task_processor.logs import get_logger

SCHEME = "redis+sentinel://"

DEFAULT_SENTINEL_PORT = 26379

SENTINEL_TIMEOUT = 1.0
"""Seconds to connect to one Sentinel and hear its answer before asking the next (they answer from memory)."""

QUERY_OPTIONS = ("sentinel_password",)
"""What a sentinel URL may carry after ``?``."""

log = get_logger("task_processor.redis")


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SCHEME)


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        """The Sentinels' addresses as the URL lists them, for messages."""
        return ",".join(_host_port(address) for address in self.sentinels)

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        """Raises ValueError naming what is wrong (the caller adds the URL, its password masked)."""
        if not is_sentinel_url(url):
            raise ValueError(f"not a {SCHEME} URL")
        rest = url.removeprefix(SCHEME)
        userinfo, _, rest = rest.rpartition("@")  # the LAST @, as task_processor.connection.redact_url reads it
        rest, _, query = rest.partition("?")
        hosts, _, path = rest.partition("/")
        user, colon, password = userinfo.partition(":")
        parts = path.split("/") if path else []
        if not parts or not parts[0] or len(parts) > 2:
            raise ValueError("it names no service: give /<service name>[/<db>] after the Sentinels' host:port list")
        db = parts[1] if len(parts) == 2 else "0"
        if not (db.isascii() and db.isdigit()):
            raise ValueError(f"database {db!r} is not a number >= 0")
        options = parse_qs(query, keep_blank_values=True)
        for name in options:
            if name not in QUERY_OPTIONS:
                raise ValueError(f"unknown option {name!r} (a sentinel URL takes {', '.join(QUERY_OPTIONS)})")
        sentinel_password = options.get("sentinel_password", [""])[-1]
        return cls(
            sentinels=tuple(_address(part) for part in hosts.split(",")),
            service=unquote(parts[0]),
            db=int(db),
            username=unquote(user) or None,
            password=unquote(password) if colon and password else None,
            sentinel_password=sentinel_password or None,
        )


def _address(text: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6 address]:port``."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError(f"Sentinel address {text!r} has no host: list them as host:port,host:port")
    if not port:
        return host, DEFAULT_SENTINEL_PORT
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"Sentinel address {text!r} has no valid port")
    return host, int(port)


class NoMasterError(MasterNotFoundError):
    """No Sentinel named a master for the service; ``fix`` says what to do. A connection error to redis-py, so its
    retries and our outage handling treat it as Redis being away (which it is, during a failover)."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


class _Round(threading.local):
    """What the Sentinels said during one thread's current ``discover_master``."""

    answered = 0
    known = False
    epoch = 0
    services: tuple[str, ...] = ()
    error = ""
    refused_login = False


_round = _Round()


class _SentinelNode(redis.Redis):
    """One Sentinel's client, noting for the round whether it answered and which services it monitors."""

    def sentinel_masters(self) -> Any:
        try:
            masters = super().sentinel_masters()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            _round.error = _round.error or first_line(exc)
            _round.refused_login = _round.refused_login or isinstance(exc, redis.AuthenticationError)
            raise
        _round.answered += 1
        _round.services = tuple(sorted({*_round.services, *masters}))
        return masters


@dataclass
class _Followed:
    """The master this process last followed for one service, and the failover epoch that named it."""

    address: tuple[str, int] | None = None
    epoch: int = -1


_followed: dict[tuple[tuple[tuple[str, int], ...], str], _Followed] = {}
_followed_lock = threading.Lock()


def _new_lock_in_child() -> None:
    """A forked child (RQ's scheduler) must not inherit the lock held by a thread that does not exist there."""
    global _followed_lock
    _followed_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


class Sentinels(Sentinel):
    """The Sentinels of one URL. Asks them in turn for the master (redis-py's ``discover_master``), says once per
    process and failover where the master went, and explains a failure to find one."""

    def __init__(self, url: SentinelURL, **connection_kwargs: Any) -> None:
        node_options: dict[str, Any] = {
            "socket_connect_timeout": SENTINEL_TIMEOUT,
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),  # a Sentinel that does not answer: ask the next one at once
            "password": url.sentinel_password,
        }
        super().__init__([], sentinel_kwargs=node_options, **connection_kwargs)
        self.sentinels = [_SentinelNode(host, port, **node_options) for host, port in url.sentinels]
        self.url = url
        with _followed_lock:
            self._followed = _followed.setdefault((url.sentinels, url.service), _Followed())

    def check_master_state(self, state: dict[str, Any], service_name: str) -> bool:
        _round.known = True
        if not super().check_master_state(state, service_name):
            return False
        _round.epoch = int(state.get("config-epoch", 0))
        return True

    def discover_master(self, service_name: str) -> tuple[str, int]:
        _round.__dict__.clear()
        try:
            address: tuple[str, int] = super().discover_master(service_name)
        except MasterNotFoundError as exc:
            raise self._no_master(service_name) from exc
        self._follow(address, _round.epoch)
        return address

    def _follow(self, address: tuple[str, int], epoch: int) -> None:
        """Log a new master once per process: a Sentinel that has not heard of the failover yet (an older epoch)
        may still name the old one for a moment, which is no news."""
        followed = self._followed
        with _followed_lock:
            previous = followed.address
            if previous == address or epoch < followed.epoch:
                return
            followed.address, followed.epoch = address, epoch
        if previous is not None:
            log.warning(
                "Redis master moved; following it",
                service=self.url.service,
                master=_host_port(address),
                previous=_host_port(previous),
                pid=os.getpid(),
            )

    def _no_master(self, service: str) -> NoMasterError:
        where = self.url.where
        if not _round.answered:
            reason = f" ({_round.error})" if _round.error else ""
            fix = "fix the Sentinels' addresses in REDIS_URL, or start them"
            if _round.refused_login:
                fix = "give the Sentinels' own password as ?sentinel_password= in REDIS_URL"
            return NoMasterError(f"no Sentinel at {where} answered for service {service!r}{reason}", fix)
        if not _round.known:
            monitored = ", ".join(repr(name) for name in _round.services) or "none"
            return NoMasterError(
                f"the Sentinels at {where} monitor no service {service!r} (they monitor: {monitored})",
                "fix the service name in REDIS_URL",
            )
        return NoMasterError(
            f"the Sentinels at {where} name no reachable master for service {service!r} right now",
            "wait for them to fail over (or check the master and its replicas)",
        )


def _host_port(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def master_client(url: str, redis_class: type[redis.Redis], **connection_kwargs: Any) -> redis.Redis:
    """A client of the service's master, whatever server that is at the moment. ``connection_kwargs`` are for the
    connections to the master (timeouts, retries, pool size); the Sentinels get short timeouts of their own."""
    parsed = SentinelURL.parse(url)
    sentinels = Sentinels(parsed)
    client: redis.Redis = sentinels.master_for(
        parsed.service,
        redis_class=redis_class,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **connection_kwargs,
    )
    return client
