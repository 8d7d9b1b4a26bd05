"""p2m: describe a task in a few sentences and examples, get a small, fast, deployed model."""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
