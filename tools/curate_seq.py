"""Curation of generated QA, code, data-to-text and text-generation rows: duplicates, splits, diversity."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import numpy as np

from p2m.tools.generate import diversity
from p2m.tools.parse import qa_parts
from p2m.tools.seq_checks import norm
from p2m.tools.types import TaskSpec

__all__ = ["dedup_key", "curate_seq"]


def dedup_key(row: dict[str, Any], task_type: str) -> str:
    """What makes two rows the same example: the question (QA), the request (code), the input otherwise."""
    if task_type == "extractive_qa":
        parts = qa_parts(row["input"])
        return norm(parts[1] if parts else row["input"]) + " || " + norm(row["output"])
    return norm(row["input"])


def _split_of(key: str, val_fraction: float) -> str:
    h = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if h < val_fraction else "train"


def _group(row: dict[str, Any], qa: bool) -> str:
    """Rows of one group go to the same split: the passage for QA, the input otherwise."""
    parts = qa_parts(row["input"]) if qa else None
    return norm(parts[0]) if parts else norm(row["input"])


def curate_seq(
    rows: list[dict[str, Any]], spec: TaskSpec, *, near_dup: float = 0.95, val_fraction: float = 0.15
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Drop exact and near-duplicates (by embedding), split train/validation, report diversity.

    QA rows are compared and split by passage (no passage is in both splits); other rows by their input.
    Diversity is 1 − the mean pairwise cosine similarity of what was compared. Rows dropped while
    generating stay dropped.

    Returns:
        (updates for the store: {id, kept, drop_reason, split}, report {kept, dropped, diversity, checks}).
    """
    from p2m.tools.embed import embed

    live = [r for r in rows if r.get("kept")]
    updates = {r["id"]: {"id": r["id"], "kept": False, "drop_reason": r.get("drop_reason") or "dropped"}
               for r in rows if not r.get("kept")}  # fmt: skip
    seen: set[str] = set()
    for r in live:  # exact repeats first
        key = dedup_key(r, spec.task_type)
        if key in seen:
            updates[r["id"]] = {"id": r["id"], "kept": False, "drop_reason": "duplicate"}
        seen.add(key)
    live = [r for r in live if r["id"] not in updates]
    # Near-duplicates by embedding: of the passages for QA (several questions share one passage), else of the key.
    qa = spec.task_type == "extractive_qa"
    groups = [_group(r, qa) for r in live]
    texts = list(dict.fromkeys(groups)) if qa else [dedup_key(r, spec.task_type) for r in live]
    vecs = embed(texts) if texts else np.zeros((0, 384))
    alive = np.ones(len(texts), dtype=bool)
    sims = vecs @ vecs.T if len(texts) else np.zeros((0, 0))
    for i in range(len(texts)):
        if i and alive[:i].any() and sims[i, :i][alive[:i]].max() >= near_dup:
            alive[i] = False
    dead = {t for t, a in zip(texts, alive, strict=True) if not a}
    for k, r in enumerate(live):
        if (groups[k] if qa else texts[k]) in dead:
            updates[r["id"]] = {"id": r["id"], "kept": False, "drop_reason": "near_duplicate"}
    kept = [r for r in live if r["id"] not in updates]
    for r in kept:
        updates[r["id"]] = {"id": r["id"], "kept": True, "drop_reason": None,
                            "split": _split_of(_group(r, qa), val_fraction)}  # fmt: skip
    if len({_group(r, qa) for r in kept}) >= 2 and len({updates[r["id"]]["split"] for r in kept}) == 1:
        # both splits non-empty: the last group moves to the other split
        other = "train" if updates[kept[0]["id"]]["split"] == "validation" else "validation"
        for r in kept:
            if _group(r, qa) == _group(kept[-1], qa):
                updates[r["id"]]["split"] = other
    dropped = Counter(u["drop_reason"] for u in updates.values() if not u["kept"])
    report = {
        "kept": len(kept),
        "dropped": dict(dropped),
        "diversity": round(diversity(vecs[alive]), 4) if len(kept) else 0.0,
        "diversity_of": "passages" if qa else "inputs",
        "per_label": {},
    }
    return list(updates.values()), report
