"""Two validation estimates, never mixed, and whether a change is a gain beyond the noise.

A student is scored on teacher-written validation rows (plentiful, and flattering: the teacher wrote
the training rows too — students scored 92–96% there and 68–75% on real rows, bench/RESULTS.md) and
on real rows (the prompt's demonstrations, examples a user labelled, held-out retrieved data, an
`--eval` file). Each estimate carries its row count and a 90% interval: Wilson's for accuracy and
exact match (one 0/1 outcome per row), a seeded percentile bootstrap over rows otherwise.

`paired_gain` compares two students on the same rows (a paired bootstrap of the per-row differences):
a change whose interval holds 0 is not a gain. Every decision and report uses these.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Estimate", "row_scores", "interval", "estimate", "paired_gain", "LEVEL", "unit"]

LEVEL = 0.90  # the interval's coverage
_BOOT = 1000  # bootstrap resamples (a few ms for a few hundred rows)
_BINARY = ("accuracy", "exact_match", "squad_em")


@dataclass
class Estimate:
    """One validation estimate: `score` on `rows` rows of `source` ("teacher" or "real"), 90% in [low, high]."""

    source: str
    metric: str
    score: float
    rows: int
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """E.g. 'accuracy 0.720 on 50 real rows (90%: 0.61–0.81)'."""
        what = "real" if self.source == "real" else "teacher-written"
        return (f"{self.metric} {self.score:.3f} on {self.rows} {what} row{'s' * (self.rows != 1)} "
                f"(90%: {self.low:.2f}–{self.high:.2f})")  # fmt: skip


def unit(metric: str, score: float) -> float:
    """A score on a 0–1 scale (chrF++ is reported 0–100)."""
    return score / 100.0 if metric == "chrf" else score


def row_scores(metric: str, preds: list[str], refs: list[list[str]] | list[str]) -> list[float]:
    """One score per row on the metric's own scale: 0/1 for accuracy, SQuAD F1 or EM, sentence chrF++,
    ROUGE-L F. Their mean is the metric for all but chrF++ (corpus-level), which it tracks closely."""
    from p2m.tools import evaluate as ev

    refs = [[r] if isinstance(r, str) else list(r) for r in refs]
    if metric == "accuracy":
        return [float(p == r[0]) for p, r in zip(preds, refs, strict=True)]
    if metric in ("squad_f1", "squad_em"):
        per = [ev.squad_row(p, r) for p, r in zip(preds, refs, strict=True)]
        return [f if metric == "squad_f1" else e for e, f in per]
    if metric == "exact_match":
        return [ev.exact_match([p], [r]) for p, r in zip(preds, refs, strict=True)]
    if metric == "rouge_l":
        return [ev.rouge_l([p], [r]) for p, r in zip(preds, refs, strict=True)]
    return [ev.chrf_row(p, r) for p, r in zip(preds, refs, strict=True)]


def _wilson(k: float, n: int, level: float) -> tuple[float, float]:
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def _bootstrap_means(values: list[float], seed: int) -> list[float]:
    rng = random.Random(seed)
    n = len(values)
    return sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(_BOOT))


def _percentiles(sorted_means: list[float], level: float) -> tuple[float, float]:
    lo = sorted_means[int((1 - level) / 2 * (len(sorted_means) - 1))]
    hi = sorted_means[int((1 + level) / 2 * (len(sorted_means) - 1))]
    return lo, hi


def interval(metric: str, rows: list[float], score: float | None = None, level: float = LEVEL,
             seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """The `level` interval of the metric on these rows (centred on `score` when the metric is corpus-level)."""
    n = len(rows)
    top = 100.0 if metric == "chrf" else 1.0
    if n == 0:
        return 0.0, top
    if metric in _BINARY:
        return _wilson(sum(rows), n, level)
    mean = sum(rows) / n
    lo, hi = _percentiles(_bootstrap_means(rows, seed), level)
    shift = (score if score is not None else mean) - mean
    return max(0.0, lo + shift), min(top, hi + shift)


def estimate(source: str, metric: str, score: float, rows: list[float], seed: int = 0) -> Estimate:
    """An Estimate of `score` (the metric on these rows) with its interval."""
    lo, hi = interval(metric, rows, score, seed=seed)
    return Estimate(source, metric, round(score, 4), len(rows), round(lo, 4), round(hi, 4))


def paired_gain(old: list[float], new: list[float], metric: str = "accuracy", level: float = LEVEL,
                seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The change from `old` to `new` per-row scores of the same rows: {delta, low, high, rows, significant}.

    `delta` and its interval are on a 0–1 scale; `significant` when the interval excludes 0 (a change
    inside the noise is not a gain, nor a loss).
    """
    n = min(len(old), len(new))
    if n == 0 or len(old) != len(new):
        return {"delta": 0.0, "low": -1.0, "high": 1.0, "rows": n, "significant": False}
    diffs = [unit(metric, b) - unit(metric, a) for a, b in zip(old, new, strict=True)]
    delta = sum(diffs) / n
    if all(d == diffs[0] for d in diffs):  # no spread: the bootstrap would claim certainty from one value
        lo, hi = (delta, delta) if n >= 30 else (min(delta, 0.0), max(delta, 0.0))
    else:
        lo, hi = _percentiles(_bootstrap_means(diffs, seed), level)
    return {"delta": round(delta, 4), "low": round(lo, 4), "high": round(hi, 4), "rows": n,
            "significant": lo > 0 or hi < 0}  # fmt: skip
