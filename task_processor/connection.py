"""Redis clients built one way for both sides, and errors that name the URL without its password."""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from task_processor.errors import RedisCommandError, RedisUnavailableError, TaskProcessorError, first_line
from task_processor.logs import get_logger
from task_processor.sentinel import NoMasterError, SentinelURL, is_sentinel_url, master_client

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a TCP connection before calling Redis unreachable."""

TLS_HANDSHAKE_TIMEOUT = 3.0
"""Seconds a rediss:// TLS handshake may take; a plain Redis never answers one, so this bounds that mistake."""

HEALTH_CHECK_INTERVAL = 30
"""Seconds a pooled connection may sit idle before it is pinged on next use (catches dropped sockets)."""

RETRY_ATTEMPTS = 3
"""Reconnect attempts per command (with jittered exponential backoff) before an error reaches the caller."""

RETRY_BACKOFF_BASE, RETRY_BACKOFF_CAP = 0.1, 2.0
"""Seconds before the first reconnect attempt (doubling, jittered) and the longest wait between two."""

COMMAND_IN_ERROR = re.compile(r"^Command (?:# \d+ )?\((\S+)(?: ([^\s)]+))?")
"""redis-py names a pipeline's failing command (and our client any command) at the start of the error."""

FOREIGN_KEY_IN_ERROR = re.compile(r"WRONGTYPE (\S+) holds an? ")
"""How our own Lua scripts report a key holding the wrong type of value."""

log = get_logger("task_processor.redis")


class PlainServerError(redis.RedisError):
    """A rediss:// URL points at a server that speaks plain Redis; not a network fault, so never retried."""


class TLSCheckedConnection(redis.SSLConnection):
    """A TLS connection whose handshake is bounded, and which says so when the server does not speak TLS."""

    def _wrap_socket_with_ssl(self, sock: socket.socket) -> Any:
        sock.settimeout(TLS_HANDSHAKE_TIMEOUT)
        try:
            wrapped = super()._wrap_socket_with_ssl(sock)
        except (OSError, ssl.SSLError) as exc:
            if _speaks_plain_redis(self.host, self.port):
                raise PlainServerError("the server speaks plain Redis, not TLS") from exc
            raise
        wrapped.settimeout(self.socket_timeout)
        return wrapped


def _speaks_plain_redis(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as probe:
            probe.sendall(b"PING\r\n")
            return probe.recv(1)[:1] in (b"+", b"-")
    except OSError:
        return False


def name_error(error: redis.ResponseError, command: Sequence[Any]) -> redis.ResponseError:
    """``error``, the reply to ``command``, named by the command and its first argument (mostly its key), as
    redis-py's pipeline names the errors it raises."""
    if error.args and isinstance(error.args[0], str) and command:
        words = (a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in command[:2])
        error.args = (f"Command ({' '.join(words)[:200]}) caused error: {error.args[0]}",)
    return error


class Client(redis.Redis):
    """redis.Redis whose command errors name the command and its key, as redis-py's pipeline errors already do."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)
        except redis.ResponseError as exc:
            name_error(exc, args)
            raise


PASSWORD_IN_QUERY = re.compile(r"([?&][^=&#]*password=)[^&#]*", re.IGNORECASE)
"""redis-py also takes the password as a query argument (``?password=...``, ``&sentinel_password=...``)."""


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe to print and log (any port text and IPv6 brackets kept).

    Everything between ``://`` and the LAST ``@`` is the user information, even where urlsplit would see a path
    or a fragment: a password with an unencoded ``/``, ``?`` or ``#`` must be hidden too (it is what makes the
    URL malformed, so it is exactly the URL an error shows). The user name before the first ``:`` stays.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:***@{hostpart}" if colon else f"***@{hostpart}"
    return f"{scheme}://" + PASSWORD_IN_QUERY.sub(r"\1***", rest)


def scrub(text: str, url: str) -> str:
    """``text`` (a library's error message) without any piece of the password in ``url``, which it may quote:
    redis-py's "Port could not be cast to integer value as 'pa'" quotes the start of a password holding a '/'."""
    rest = url.partition("://")[2]
    secrets = [m[0].removeprefix(m[1]) for m in PASSWORD_IN_QUERY.finditer(rest)]
    userinfo = rest.rpartition("@")[0]
    secrets.append(userinfo.partition(":")[2] if ":" in userinfo else userinfo)
    for secret in secrets:
        for piece in sorted({secret, *re.split(r"[/?#@:&=]+", secret)}, key=len, reverse=True):
            if len(piece) >= 3:  # shorter pieces would garble the message and give away next to nothing
                text = text.replace(piece, "***")
    return text


CONNECTIONS_PER_WORKER = 4
"""Connections an RQ worker may hold at once: its blocking pop, its heartbeat, RQ's command pubsub, and one spare."""


def connect(url: str, workers: int = 1) -> redis.Redis:
    """A client with bounded connect time, keepalive and retries: a restart of Redis costs a retry, not a crash.

    Its pool holds enough connections for ``workers`` RQ workers in this process (the slots of ``--concurrency``),
    plus redis-py's default of 100 for everything else. A ``redis+sentinel://`` URL gives a client of the master
    the Sentinels name, whichever server that is at the moment (``task_processor.sentinel``)."""
    options: dict[str, Any] = {
        "max_connections": 100 + CONNECTIONS_PER_WORKER * workers,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": Retry(ExponentialWithJitterBackoff(base=RETRY_BACKOFF_BASE, cap=RETRY_BACKOFF_CAP), RETRY_ATTEMPTS),
    }
    try:
        client = master_client(url, Client, **options) if is_sentinel_url(url) else Client.from_url(url, **options)
    except ValueError as exc:
        userinfo = url.partition("://")[2].rpartition("@")[0]
        encode = set(userinfo) & set("/?#@") and not is_sentinel_url(url)  # a sentinel URL reads them as they are
        hint = " (percent-encode any '/', '?', '#' or '@' in the password)" if encode else ""
        # `from None`: redis-py's own error may quote part of the password (scrubbed here, not in a traceback).
        raise RedisUnavailableError(
            f"REDIS_URL {redact_url(url)!r} is malformed ({scrub(str(exc), url)}): fix REDIS_URL{hint}"
        ) from None
    if client.connection_pool.connection_class is redis.SSLConnection:
        client.connection_pool.connection_class = TLSCheckedConnection
    return client


def describe_failure(url: str, exc: redis.RedisError) -> TaskProcessorError:
    """Turn a redis-py error into one line that says what is wrong and what to do."""
    where = redact_url(url)
    text = scrub(first_line(exc), url)
    if isinstance(exc, PlainServerError):
        return RedisUnavailableError(
            f"Redis at {where} does not speak TLS (the TLS handshake got no answer, plain Redis did): use redis:// "
            "in REDIS_URL, or enable TLS on the server"
        )
    if isinstance(exc, NoMasterError):
        return RedisUnavailableError(f"{text}: {exc.fix}")
    if isinstance(exc, redis.AuthenticationError) or re.search(r"\b(NOAUTH|WRONGPASS)\b", text):
        return RedisUnavailableError(f"Redis at {where} refused the credentials: fix the password in REDIS_URL")
    if not isinstance(exc, redis.ResponseError):
        return RedisUnavailableError(
            f"cannot reach Redis at {where} ({text}): start redis-server there or point REDIS_URL at one"
        )
    if "DB index is out of range" in text:
        return RedisUnavailableError(
            f"Redis at {where}: DB index is out of range: the database number in REDIS_URL "
            f"(/{_database(url)}) does not exist there; use one below its `databases` setting"
        )
    match, reason = COMMAND_IN_ERROR.match(text), text.split("caused error: ", 1)[-1]
    key = match[2] if match and match[2] and match[1].upper() not in ("EVAL", "EVALSHA") else None
    if key is None and (ours := FOREIGN_KEY_IN_ERROR.match(reason)):
        key = ours[1]
    if key is not None and reason.startswith("WRONGTYPE"):
        return RedisCommandError(
            f"Redis at {where}: key {key!r} holds data RQ did not write there ({reason}): rename or delete that key "
            "(the README lists the keys this project uses)"
        )
    on = f" on key {key!r}" if key else ""
    return RedisCommandError(f"Redis at {where} refused a command{on} ({reason}): check the server's configuration")


def _database(url: str) -> str:
    return str(SentinelURL.parse(url).db) if is_sentinel_url(url) else urlsplit(url).path.lstrip("/")


def ping(connection: redis.Redis, url: str) -> None:
    """Fail fast with a clear message instead of on the first real command."""
    try:
        connection.ping()
    except redis.RedisError as exc:
        raise describe_failure(url, exc) from exc


class OutageLog:
    """Say "lost Redis" once when a connection fails and "reconnected" once when one works again.

    Every loop of a process (dequeue, heartbeat, reaper, enqueue) reports here, so an outage costs two log
    lines per process however many retries it takes. Thread-safe.
    """

    def __init__(self, announce_loss: bool = True) -> None:
        self.announce_loss = announce_loss  # off where the caller gets the loss as an error (the Producer API)
        self._lost = False
        self._lock = threading.Lock()

    @property
    def lost(self) -> bool:
        return self._lost

    def failed(self, exc: BaseException, **fields: Any) -> None:
        with self._lock:
            if self._lost:
                return
            self._lost = True
        if not self.announce_loss:
            return
        log.warning("lost Redis; reconnecting", error=first_line(exc), **fields)

    @contextmanager
    def tolerated(self) -> Iterator[None]:
        """Run a block whose connection failure is reported here and swallowed (a loop will try again)."""
        try:
            yield
        except redis.ConnectionError as exc:
            self.failed(exc)

    def succeeded(self) -> bool:
        """Note a call that worked; True for the one that ends an outage."""
        if not self._lost:  # the common case: no lock, no log
            return False
        with self._lock:
            if not self._lost:
                return False
            self._lost = False
        log.info("reconnected to Redis")
        return True
