"""The expected failures. The CLI and UI print these as one line; anything else is a bug."""

from __future__ import annotations

__all__ = ["P2MError", "TaskError", "LLMError", "DataError", "ConfigError", "RunInterrupted"]


class P2MError(Exception):
    """A failure the user can act on; the message says what failed and what to do."""


class TaskError(P2MError):
    """The task description cannot be turned into a model (no task, unsupported type, no labels)."""


class LLMError(P2MError):
    """The teacher LLM could not be started, reached or understood."""


class DataError(P2MError):
    """A data file is missing, unreadable or malformed."""


class ConfigError(P2MError):
    """A setting, path or option is invalid."""


class RunInterrupted(P2MError):
    """The run was stopped (Ctrl-C); what was done is kept and `p2m resume` continues it."""
