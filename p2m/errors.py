"""The expected failures. The CLI and UI print these as one line; anything else is a bug."""

from __future__ import annotations

import errno
import re

__all__ = ["P2MError", "TaskError", "LLMError", "RequestFailed", "DataError", "ConfigError", "RunInterrupted",
           "StorageError", "storage_error"]  # fmt: skip


class P2MError(Exception):
    """A failure the user can act on; the message says what failed and what to do."""


class TaskError(P2MError):
    """The task description cannot be turned into a model (no task, unsupported type, no labels)."""


class LLMError(P2MError):
    """The teacher LLM could not be started, reached or understood."""


class RequestFailed(LLMError):
    """One teacher request failed after its retries while the endpoint answers others: code that makes many
    requests (generation) counts it and goes on; anywhere else it is an LLMError like any other."""


class DataError(P2MError):
    """A data file is missing, unreadable or malformed."""


class ConfigError(P2MError):
    """A setting, path or option is invalid."""


class RunInterrupted(P2MError):
    """The run was stopped (Ctrl-C); what was done is kept and `p2m resume` continues it."""


class StorageError(P2MError):
    """The disk is full (or a file-size limit was hit) while p2m was writing; nothing written before is lost."""


_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# SQLite: SQLITE_FULL on a full disk; a write, a shared-memory file or a truncation cut short by a size limit
_FULL_SQLITE = {"SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_SHMSIZE", "SQLITE_IOERR_TRUNCATE"}
# how libraries that do not raise OSError say it (SQLite; Rust's io errors in safetensors; torch's writer)
_FULL_TEXT = re.compile(r"database or disk is full|no space left|file too large|disk quota|os error 2[78]\b"
                        r"|code: 2[78]\b|file write failed", re.I)  # fmt: skip


def storage_error(
    error: BaseException, doing: str = "writing", then: str = "try again"
) -> StorageError | None:
    """A StorageError when `error` (or what it was raised from) says the disk is full, else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, StorageError):
            return error
        full = isinstance(error, OSError) and error.errno in _FULL_ERRNOS
        full = full or getattr(error, "sqlite_errorname", "") in _FULL_SQLITE
        if full or (not isinstance(error, OSError) and _FULL_TEXT.search(str(error))):
            where = f" {error.filename}" if isinstance(error, OSError) and error.filename else ""
            return StorageError(
                f"the disk is full (or a file-size limit was hit) while {doing}{where} ({str(error)[:160]});"
                f" free some space, then {then}"
            )
        error = error.__cause__ or error.__context__
    return None
