"""Fault points: where tests make a run die or its disk fill up, at a named moment, for real.

`P2M_FAULTS="stage:train=kill"` makes the process SIGKILL itself when the run enters its train stage;
`rows@2=kill` when the second batch of examples has been stored; `model=enospc` raises "No space left
on device" where a model is saved. Names: `stage:<stage>` (RunStore.set_stage), `rows`
(RunStore.add_examples, after the commit), `experiment` (RunStore.add_experiment, after the commit),
`answer` (LLMClient, a fresh answer cached but not yet used), `model` (a student about to be saved),
`decision` (RunStore.add_decision, after the commit). `interrupt` raises KeyboardInterrupt instead of
killing (in-process tests of resuming at every node).
Unset — always, outside tests — a point costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections import Counter

__all__ = ["point", "reset"]

_hits: Counter[str] = Counter()
_lock = threading.Lock()


def _plan() -> dict[str, tuple[int, str]]:
    plan = {}
    for item in filter(None, (x.strip() for x in os.environ.get("P2M_FAULTS", "").split(","))):
        where, _, action = item.partition("=")
        name, _, nth = where.partition("@")
        plan[name] = (int(nth or 1), action or "kill")
    return plan


def reset() -> None:
    """Forget the hits counted so far (a new in-process run counts from one)."""
    with _lock:
        _hits.clear()


def point(name: str) -> None:
    """Act on `name` when P2M_FAULTS asks for it at this hit: `kill` (SIGKILL this process), `interrupt`
    (KeyboardInterrupt) or `enospc`."""
    if "P2M_FAULTS" not in os.environ:
        return
    planned = _plan().get(name)
    if planned is None:
        return
    with _lock:
        _hits[name] += 1
        hit = _hits[name]
    nth, action = planned
    if hit != nth:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "interrupt":
        raise KeyboardInterrupt(f"fault point {name}")
    elif action == "enospc":
        raise OSError(errno.ENOSPC, f"No space left on device (fault point {name})")
    else:
        raise ValueError(f"P2M_FAULTS: unknown action {action!r} for {name!r} (kill, interrupt or enospc)")
