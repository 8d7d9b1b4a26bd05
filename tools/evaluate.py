"""Metrics and error analysis: what the scores are and where the model fails."""

from __future__ import annotations

import json
from pathlib import Path

from p2m.errors import DataError
from p2m.tools.types import EvalReport

__all__ = ["classification_report", "load_jsonl_pairs"]


def classification_report(
    y_true: list[str],
    y_pred: list[str],
    labels: list[str],
    inputs: list[str] | None = None,
    max_errors: int = 25,
) -> EvalReport:
    """Accuracy, macro-F1, per-label precision/recall/F1, the confusion matrix and example errors.

    A prediction outside `labels` counts as wrong (it is kept in the error list as predicted).
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    n = len(y_true)
    if n == 0:
        return EvalReport(metric="accuracy", score=0.0, n=0, labels=list(labels))
    acc = sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / n
    macro = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_label = {
        label: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4), "f1": round(float(f[i]), 4),
                "support": int(s[i])}
        for i, label in enumerate(labels)
    }  # fmt: skip
    confusion = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    errors = [
        {"input": (inputs[i] if inputs else ""), "expected": t, "predicted": pr}
        for i, (t, pr) in enumerate(zip(y_true, y_pred, strict=True))
        if t != pr
    ][:max_errors]
    return EvalReport(
        metric="accuracy",
        score=round(acc, 4),
        n=n,
        scores={"accuracy": round(acc, 4), "macro_f1": round(float(macro), 4)},
        per_label=per_label,
        confusion=confusion,
        labels=list(labels),
        errors=errors,
    )


def load_jsonl_pairs(path: str | Path, labels: list[str] | None = None) -> list[tuple[str, str]]:
    """(input, output) pairs from a JSONL file of {"input", "output"} objects.

    Raises:
        DataError: the file is missing, empty or malformed, or names a label the task does not have;
            the message gives the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f'{path}: no such file; --eval takes a JSONL file of {{"input": …, "output": …}} lines'
        )
    pairs = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it as UTF-8 text ({e})") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f'{path}:{n}: not valid JSON ({e.msg}); each line must be {{"input": …, "output": …}}'
            ) from e
        if not isinstance(row, dict) or "input" not in row or "output" not in row:
            raise DataError(f'{path}:{n}: each line needs an "input" and an "output" field')
        out = row["output"]
        out = out[0] if isinstance(out, list) and out else out
        if not isinstance(row["input"], str) or not isinstance(out, str):
            raise DataError(f'{path}:{n}: "input" and "output" must be strings')
        if labels is not None and out not in labels:
            raise DataError(f"{path}:{n}: output {out!r} is not one of the task's labels {labels}")
        pairs.append((row["input"], out))
    if not pairs:
        raise DataError(f"{path}: the file holds no examples")
    return pairs
