"""Redis clients built one way for both sides, and errors that name the URL without its password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from worker.errors import RedisUnavailableError

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a TCP connection before calling Redis unreachable."""

HEALTH_CHECK_INTERVAL = 30
"""Seconds a pooled connection may sit idle before it is pinged on next use (catches dropped sockets)."""

RETRY_ATTEMPTS = 3
"""Reconnect attempts per command (with jittered exponential backoff) before an error reaches the caller."""


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe to print and log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def connect(url: str) -> redis.Redis:
    """A client with bounded connect time, keepalive and retries: a restart of Redis costs a retry, not a crash."""
    try:
        return redis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_keepalive=True,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            retry=Retry(ExponentialWithJitterBackoff(base=0.1, cap=2.0), RETRY_ATTEMPTS),
        )
    except ValueError as exc:
        raise RedisUnavailableError(f"REDIS_URL {redact_url(url)!r} is malformed ({exc}): fix REDIS_URL") from exc


def describe_failure(url: str, exc: redis.RedisError) -> RedisUnavailableError:
    """Turn a redis-py error into one line that says what to do."""
    where = redact_url(url)
    if isinstance(exc, redis.AuthenticationError) or str(exc).startswith(("NOAUTH", "WRONGPASS")):
        return RedisUnavailableError(f"Redis at {where} refused the credentials: fix the password in REDIS_URL")
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return RedisUnavailableError(
        f"cannot reach Redis at {where} ({reason}): start redis-server there or point REDIS_URL at one"
    )


def ping(connection: redis.Redis, url: str) -> None:
    """Fail fast with a clear message instead of on the first real command."""
    try:
        connection.ping()
    except redis.RedisError as exc:
        raise describe_failure(url, exc) from exc
