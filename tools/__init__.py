"""Stateless capabilities, one module per stage: llm, parse, generate, train, evaluate, deploy."""

from __future__ import annotations

__all__: list[str] = []
