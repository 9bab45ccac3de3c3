"""Errors shared by both sides. Each message is one line that names the problem and the fix."""

from __future__ import annotations


class TaskProcessorError(Exception):
    """Base of every error this project raises on purpose; the CLIs print these as one line."""


class ConfigError(TaskProcessorError, ValueError):
    """A setting (environment variable or option) has a value we cannot use."""


class RedisUnavailableError(TaskProcessorError, ConnectionError):
    """Redis cannot be reached or refuses us; the message carries the URL without its password."""


class RedisCommandError(TaskProcessorError):
    """Redis refused a command: usually data under one of RQ's keys that RQ did not write."""
