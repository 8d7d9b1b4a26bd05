"""The one limit on files people hand to p2m: chat `/upload`, the web app's upload button, `p2m index add`.

A file (or a folder's data files together) above the limit is refused with one line that gives its size and
the limit, before anything reads it. `P2M_MAX_UPLOAD_MB` changes the limit.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from p2m.errors import ConfigError, DataError

__all__ = ["MAX_UPLOAD_MB", "max_upload_mb", "check_upload_size", "decode_text"]

MAX_UPLOAD_MB = 200  # megabytes (10^6 bytes); a labelled text file this large holds millions of rows


def max_upload_mb() -> float:
    """The upload limit in MB: `P2M_MAX_UPLOAD_MB` when set, else MAX_UPLOAD_MB.

    Raises:
        ConfigError: P2M_MAX_UPLOAD_MB is not a positive number.
    """
    raw = os.environ.get("P2M_MAX_UPLOAD_MB", "").strip()
    if not raw:
        return float(MAX_UPLOAD_MB)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"P2M_MAX_UPLOAD_MB must be a positive number of megabytes, not {raw!r}; unset it "
                          f"for the default {MAX_UPLOAD_MB}")  # fmt: skip
    return value


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def check_upload_size(path: str | Path) -> int:
    """The size in bytes of a file (or of a folder's files) that is within the upload limit.

    Raises:
        DataError: it is larger than the limit; the message gives both.
        ConfigError: P2M_MAX_UPLOAD_MB is malformed.
    """
    limit = max_upload_mb()
    path = Path(path)
    try:
        size = _size(path)
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror or e})") from e
    if size > limit * 1e6:
        mb = f"{size / 1e6:,.0f}" if size >= 10e6 else f"{size / 1e6:.2g}"
        raise DataError(f"{path.name} is {mb} MB; files are limited to {limit:g} MB (split it, or raise "
                        "P2M_MAX_UPLOAD_MB)")  # fmt: skip
    return size


def decode_text(data: bytes, name: str, final: bool = True) -> str:
    """UTF-8 text (a leading BOM dropped); `final=False` for the head of a longer file (a character cut at
    the end is fine).

    Raises:
        DataError: the bytes are UTF-16, binary, or text in another encoding (latin-1, cp1252, …); the
            message says to save the file as UTF-8.
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(f"{name} is UTF-16 text; save it as UTF-8 and try again")
    data = data[3:] if data.startswith(codecs.BOM_UTF8) else data
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError as e:
        kind = "binary, not text" if b"\x00" in data[:4096] else "not UTF-8 text (latin-1 or cp1252?)"
        raise DataError(f"{name} is {kind}: byte 0x{data[e.start]:02x} at offset {e.start}; save it as UTF-8 "
                        "and try again") from e  # fmt: skip
