"""The one folder p2m keeps everything in: `P2M_HOME`, default `~/.p2m`."""

from __future__ import annotations

import os
from pathlib import Path

from p2m.errors import ConfigError

__all__ = ["home_dir", "runs_dir", "ensure_writable"]


def ensure_writable(path: Path) -> Path:
    """Create `path` if needed and check that files can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".p2m-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to {path} ({e.strerror or e}); choose a writable folder") from e
    return path


def home_dir() -> Path:
    """The p2m home folder (`P2M_HOME`, default `~/.p2m`), created on first use."""
    return ensure_writable(Path(os.environ.get("P2M_HOME") or Path.home() / ".p2m").expanduser())


def runs_dir() -> Path:
    """Where run folders live."""
    return ensure_writable(home_dir() / "runs")
