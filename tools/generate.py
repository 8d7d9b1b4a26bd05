"""Synthetic training data: per-label generation by the teacher, then curation that does not trust it.

Measured here with the 135M teacher: asking for "an example and its label" gives near-chance data,
while writing *for a given label* (that label's demonstrations in the system message, a short
request naming the label and the input kind, schema-constrained output, temperature ~0.9) gives
usable data; filtering by the teacher's own classification hurts, because it classifies far worse
than it writes. So curation relies on the student side instead: exact and near-duplicate removal
by embedding, embedding outliers per label, the student's cross-validated confidence, label balance.
Every dropped example keeps its reason, so each run reports what was kept and why.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from p2m.errors import ConfigError, RequestFailed
from p2m.tools.embed import embed
from p2m.tools.prompts import load_prompt
from p2m.tools.types import TaskSpec

__all__ = ["GenConfig", "generate_examples", "clean_text", "curate", "diversity", "request_messages"]

# Rotating style hints: cheap diversity in length and register without naming any domain.
_HINTS = (
    "",
    " Keep it short.",
    " Mention one specific detail.",
    "",
    " Use casual language.",
    " Make it one long sentence.",
)


@dataclass
class GenConfig:
    """How much data to generate and how.

    Attributes:
        examples: total usable examples wanted, split evenly over the labels.
        temperature: sampling temperature for the teacher.
        minutes: wall-clock cap on generation (0 = none).
        max_calls: cap on teacher calls (0 = none).
        block: consecutive requests per label, so the label's system prompt stays in the server's cache.
        seed: base seed; request i uses seed + i, so runs (and the cache) are reproducible.
        max_tokens: cap on one generated input.
    """

    examples: int = 600
    temperature: float = 0.9
    minutes: float = 6.0
    max_calls: int = 0
    block: int = 4
    seed: int = 0
    max_tokens: int = 96

    def __post_init__(self) -> None:
        if self.examples < 2:
            raise ConfigError(f"examples must be at least 2, not {self.examples}")
        if not 0 <= self.temperature <= 2:
            raise ConfigError(f"temperature must be between 0 and 2, not {self.temperature}")
        for name in ("minutes", "max_calls"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be ≥ 0, not {getattr(self, name)}")
        if self.block < 1:
            raise ConfigError(f"block must be ≥ 1, not {self.block}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _length_bounds(spec: TaskSpec) -> tuple[int, int]:
    lengths = [len(i) for i, _ in spec.demonstrations] or [80]
    return max(8, min(lengths) // 3), int(min(600, max(120, 2.5 * max(lengths))))


def request_messages(spec: TaskSpec, label: str, index: int, extra: str = "") -> list[tuple[str, str]]:
    """The chat messages of generation request `index` for `label` (`extra`: a sentence added to the request)."""
    demos = [i for i, o in spec.demonstrations if o == label]
    examples = (
        "\n".join(f"- {d}" for d in demos) or f"- (none given; {spec.label_descriptions.get(label, label)})"
    )
    system = load_prompt("generate_system").format(
        instruction=spec.instruction, label=label, examples=examples
    )
    hint = _HINTS[(index // max(1, len(spec.labels))) % len(_HINTS)] + extra
    user = load_prompt("generate_user").format(label=label, input_kind=spec.input_kind, hint=hint)
    return [("system", system), ("user", user)]


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def clean_text(text: Any, spec: TaskSpec) -> tuple[str | None, str | None]:
    """(cleaned text, None) or (None, reason) for one raw generated input."""
    if not isinstance(text, str):
        return None, "invalid_json"
    text = re.sub(r"\s+", " ", text).strip().strip('"').strip()
    if len(text.split()) < 3:
        return None, "too_short"
    low = text.lower()
    meta = [
        r"\b(input|output|label)\s*:",
        r"\bcorrect (output|answer|label)\b",
        r"\bnew \w+ (sentence|example)\b",
    ]
    if len(spec.input_kind.split()) >= 2:
        meta.append(re.escape(spec.input_kind.lower()))
    if any(re.search(p, low) for p in meta):
        return None, "talks_about_task"
    return text, None


def generate_examples(
    spec: TaskSpec,
    llm: Any,
    config: GenConfig,
    *,
    start_index: int = 0,
    counts: dict[str, int] | None = None,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
    run_id: str = "",
    progress: Any = None,
    extra_hints: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Ask the teacher for inputs, label by label, until each label has its share or a budget is spent.

    Args:
        spec: a classification TaskSpec.
        llm: an LLMClient.
        config: budgets and sampling.
        start_index: first request index (resume continues after the last stored one).
        counts: usable examples per label already stored (resume).
        on_rows: receives each batch of raw rows (kept or not) to persist them at once.
        run_id: recorded in each row's source.
        progress: a tqdm-like object updated per usable example.
        extra_hints: a sentence per label added to its requests (the planner's "confusable" rounds).

    Returns:
        {"requests", "usable", "seconds", "stopped_by"}.
    """
    labels = list(spec.labels)
    want = -(-config.examples // len(labels))  # ceil
    counts = {label: (counts or {}).get(label, 0) for label in labels}
    inflight = dict.fromkeys(labels, 0)
    seen = {_norm(i) for i, _ in spec.demonstrations}
    lo, hi = _length_bounds(spec)
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": lo, "maxLength": hi}},
        "required": ["text"],
    }
    start, index = time.monotonic(), start_index
    requests, usable, stopped_by = 0, 0, "target"
    batch: list[dict[str, Any]] = []
    width = max(1, getattr(llm, "parallelism", 1))
    pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="generate")
    pending: deque[tuple[int, str, Future]] = deque()

    def submit_next() -> bool:
        """Queue the next request whose label still needs examples; False when nothing is left to ask."""
        nonlocal index, requests, stopped_by
        if config.minutes and time.monotonic() - start > config.minutes * 60:
            stopped_by = "minutes"
            return False
        if config.max_calls and requests >= config.max_calls:
            stopped_by = "max_calls"
            return False
        if all(counts[label] + inflight[label] >= want for label in labels):
            return False
        # Request i belongs to a fixed label (blocks of `block` per label, round robin) and seed.
        while counts[label := labels[(index // config.block) % len(labels)]] + inflight[label] >= want:
            index += 1
        messages = request_messages(spec, label, index, (extra_hints or {}).get(label, ""))
        fut = pool.submit(
            llm.json, messages, schema, temperature=config.temperature, seed=config.seed + index,
            max_tokens=config.max_tokens, purpose="generate",
        )  # fmt: skip
        pending.append((index, label, fut))
        inflight[label] += 1
        index += 1
        requests += 1
        return True

    try:
        while True:
            while len(pending) < width and submit_next():
                pass
            if not pending:
                break
            i, label, fut = pending.popleft()  # answers are used in request order: reproducible
            try:
                data, failed = fut.result(), False
            except RequestFailed:  # one request failed after its retries: counted, the others go on
                data, failed = None, True
            inflight[label] -= 1
            raw = data.get("text") if isinstance(data, dict) else None
            text, reason = clean_text(raw, spec) if not failed else (None, "teacher_failed")
            if text is not None and _norm(text) in seen:
                text, reason = None, "duplicate"
            batch.append({
                "input": text if text is not None else str(raw or "")[:500],
                "output": label,
                "source": f"generated:{run_id}",
                "split": "train",
                "kept": text is not None,
                "drop_reason": reason,
                "request_index": i,
            })  # fmt: skip
            if text is not None:
                seen.add(_norm(text))
                counts[label] += 1
                usable += 1
                if progress is not None:
                    progress.update(1)
            if on_rows and len(batch) >= 8:
                full, batch = batch, []
                on_rows(full)
    finally:  # rows already answered are stored even when the run is interrupted
        pool.shutdown(wait=False, cancel_futures=True)
        if on_rows and batch:
            on_rows(batch)
    return {
        "requests": requests,
        "usable": usable,
        "seconds": time.monotonic() - start,
        "stopped_by": stopped_by,
    }


def diversity(vectors: np.ndarray) -> float:
    """1 − mean pairwise cosine similarity of normalised embeddings (0 = all the same)."""
    n = len(vectors)
    if n < 2:
        return 0.0
    sims = vectors @ vectors.T
    return float(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


def _split_of(text: str, val_fraction: float) -> str:
    h = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if h < val_fraction else "train"


def curate(
    rows: list[dict[str, Any]],
    spec: TaskSpec,
    *,
    near_dup: float = 0.93,
    outlier_z: float = 2.5,
    cv_filter: bool = True,
    balance: float = 1.25,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Decide which generated rows to keep, and their split, without asking the teacher.

    Args:
        rows: stored rows {id, input, output, kept, drop_reason}; rows already dropped while
            generating keep their reason.
        spec: the task.

    Returns:
        (updates for the store: {id, kept, drop_reason, split, quality}, report with counts and
        per-label diversity).
    """
    updates: dict[int, dict[str, Any]] = {}
    live = [r for r in rows if r.get("drop_reason") in (None, "") or r["drop_reason"] not in _GEN_REASONS]
    for r in rows:
        if r not in live:
            updates[r["id"]] = {"id": r["id"], "kept": False, "drop_reason": r["drop_reason"]}

    def drop(r: dict[str, Any], reason: str) -> None:
        updates[r["id"]] = {"id": r["id"], "kept": False, "drop_reason": reason}

    vecs = embed([r["input"] for r in live]) if live else np.zeros((0, 384))
    alive = np.ones(len(live), dtype=bool)
    # Near-duplicates: greedy, in generation order, against everything kept so far.
    sims = vecs @ vecs.T if len(live) else np.zeros((0, 0))
    for i in range(len(live)):
        if i and alive[:i].any() and sims[i, :i][alive[:i]].max() >= near_dup:
            alive[i] = False
            drop(live[i], "near_duplicate")
    labels = np.array([r["output"] for r in live])
    # Outliers: far from their label's centroid compared with the label's other examples.
    for label in spec.labels:
        idx = np.where(alive & (labels == label))[0]
        if len(idx) >= 8:
            centroid = vecs[idx].mean(0)
            centroid /= np.linalg.norm(centroid) or 1.0
            cos = vecs[idx] @ centroid
            cut = cos.mean() - outlier_z * cos.std()
            for i in idx[cos < cut]:
                alive[i] = False
                drop(live[i], "outlier")
    # Off-label: the student, cross-validated, confidently puts the example in another label.
    conf = np.full(len(live), np.nan)
    idx = np.where(alive)[0]
    if cv_filter and len(idx) >= 20 and min(Counter(labels[idx]).values()) >= 5:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_predict

        clf = LogisticRegression(C=2.0, max_iter=2000)
        proba = cross_val_predict(clf, vecs[idx], labels[idx], cv=5, method="predict_proba")
        classes = sorted(set(labels[idx]))
        own = np.array([proba[k, classes.index(labels[i])] for k, i in enumerate(idx)])
        conf[idx] = own
        thresholds = {c: proba[labels[idx] == c, j].mean() for j, c in enumerate(classes)}
        for k, i in enumerate(idx):
            j = int(proba[k].argmax())
            if (
                classes[j] != labels[i]
                and proba[k, j] >= thresholds[classes[j]]
                and own[k] < 0.5 * thresholds[labels[i]]
            ):
                alive[i] = False
                drop(live[i], "off_label")
    # Balance: no label more than `balance` × the smallest one.
    kept_counts = Counter(labels[alive])
    if kept_counts and len(kept_counts) == len(spec.labels):
        cap = int(np.ceil(min(kept_counts.values()) * balance))
        rng = np.random.default_rng(seed)
        for label in spec.labels:
            idx = np.where(alive & (labels == label))[0]
            if len(idx) > cap:
                for i in rng.choice(idx, len(idx) - cap, replace=False):
                    alive[i] = False
                    drop(live[i], "balance")
    for i, r in enumerate(live):
        quality = {"cv_confidence": None if np.isnan(conf[i]) else round(float(conf[i]), 4)}
        if alive[i]:
            updates[r["id"]] = {
                "id": r["id"],
                "kept": True,
                "drop_reason": None,
                "split": _split_of(r["input"], val_fraction),
                "quality": quality,
            }
        else:
            updates[r["id"]]["quality"] = quality
    # Small runs: every label with two or more examples needs one in each split.
    for label in spec.labels:
        mine = [updates[live[i]["id"]] for i in np.where(alive & (labels == label))[0]]
        for split, other in (("validation", "train"), ("train", "validation")):
            if len(mine) >= 2 and not any(u["split"] == split for u in mine):
                next(u for u in mine if u["split"] == other)["split"] = split
    report = {
        "kept": int(alive.sum()),
        "dropped": Counter(u["drop_reason"] for u in updates.values() if not u["kept"]),
        "per_label": {label: int((alive & (labels == label)).sum()) for label in spec.labels},
        "diversity": {
            label: round(diversity(vecs[alive & (labels == label)]), 4) for label in spec.labels if len(live)
        },
    }
    report["dropped"] = dict(report["dropped"])
    return list(updates.values()), report


# Reasons decided while generating; curation never revives these rows.
_GEN_REASONS = {"invalid_json", "too_short", "talks_about_task", "duplicate"}
