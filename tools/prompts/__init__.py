"""Prompts are data: one text file per template beside this module, loaded by `load_prompt`."""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["load_prompt"]


@cache
def load_prompt(name: str) -> str:
    """The template `name` (file `<name>.txt` next to this module), without its trailing newline."""
    return (Path(__file__).parent / f"{name}.txt").read_text(encoding="utf-8").rstrip("\n")
