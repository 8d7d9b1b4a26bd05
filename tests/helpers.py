"""Small helpers shared by the test files."""

from __future__ import annotations

import socket


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(prompt: str | None = None, options: object = None, **kw: object) -> object:
    """One round of the planner (the fixed recipe: generate, curate, train, deploy), as `p2m run --max-rounds 1`."""
    from p2m.agent.planner import PlanOptions, run_planner

    return run_planner(prompt, options, PlanOptions(max_rounds=1), **kw)  # type: ignore[arg-type]
