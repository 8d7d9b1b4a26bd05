"""The decisions and the people-facing surfaces: the pipeline, the bench runner and the `p2m` CLI."""

from __future__ import annotations

__all__: list[str] = []
