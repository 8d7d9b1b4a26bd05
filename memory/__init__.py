"""Everything p2m keeps: the run store, the LLM response cache and the home folder."""

from __future__ import annotations

from p2m.memory.cache import ResponseCache
from p2m.memory.home import home_dir, runs_dir
from p2m.memory.store import RunStore

__all__ = ["ResponseCache", "RunStore", "home_dir", "runs_dir"]
