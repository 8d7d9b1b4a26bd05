"""Metrics and error analysis: what the scores are and where the model fails."""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from pathlib import Path

from p2m.errors import DataError
from p2m.tools.types import EvalReport

__all__ = [
    "classification_report",
    "load_jsonl_pairs",
    "load_jsonl_refs",
    "squad_normalize",
    "squad_em_f1",
    "chrf",
    "rouge_l",
    "exact_match",
    "qa_report",
    "generation_report",
    "seq_report",
    "squad_row",
    "chrf_row",
]


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
    """(input, output) pairs from a JSONL file of {"input", "output"} objects (of a list of outputs, the first).

    Raises:
        DataError: the file is missing, empty or malformed, or names a label the task does not have;
            the message gives the file and line.
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise DataError(f'{path}: {what}; --eval takes a JSONL file of {{"input": …, "output": …}} lines')
    pairs = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it as UTF-8 text ({e}); save it as UTF-8") from e
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


def load_jsonl_refs(path: str | Path) -> list[tuple[str, list[str]]]:
    """(input, references) pairs from a JSONL file whose "output" is a string or a list of references.

    Raises:
        DataError: as `load_jsonl_pairs`, or an output list is empty or holds a non-string.
    """
    load_jsonl_pairs(path)  # the same checks and messages for the file as a whole
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        out = row["output"]
        refs = out if isinstance(out, list) else [out]
        if not refs or not all(isinstance(r, str) for r in refs):
            raise DataError(f'{path}:{n}: "output" must be a string or a non-empty list of strings')
        rows.append((row["input"], refs))
    return rows


# generation and QA metrics ---------------------------------------------------------------------------


def squad_normalize(text: str) -> str:
    """SQuAD answer normalisation: lower case, no punctuation, no articles (a, an, the), single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _token_f1(pred: str, ref: str) -> float:
    p, r = squad_normalize(pred).split(), squad_normalize(ref).split()
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def squad_row(pred: str, refs: list[str]) -> tuple[float, float]:
    """SQuAD (EM, F1) of one prediction against its references."""
    em = max(float(squad_normalize(pred) == squad_normalize(r)) for r in refs)
    return em, max(_token_f1(pred, r) for r in refs)


def squad_em_f1(preds: list[str], refs: list[list[str]]) -> tuple[float, float]:
    """SQuAD exact match and token F1 (each the best over an example's references), averaged; both in 0–1."""
    if not preds:
        return 0.0, 0.0
    per = [squad_row(p, r) for p, r in zip(preds, refs, strict=True)]
    return sum(e for e, _ in per) / len(per), sum(f for _, f in per) / len(per)


def _ref_streams(refs: list[list[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: one stream per reference position, None where an example has fewer references."""
    width = max((len(r) for r in refs), default=1)
    return [[r[k] if k < len(r) else None for r in refs] for k in range(width)]


def chrf(preds: list[str], refs: list[list[str]]) -> float:
    """Corpus chrF++ (sacrebleu `CHRF(word_order=2)`), several references per example allowed; 0–100."""
    from sacrebleu.metrics import CHRF

    if not preds:
        return 0.0
    return float(CHRF(word_order=2).corpus_score(list(preds), _ref_streams(refs)).score)


def chrf_row(pred: str, refs: list[str]) -> float:
    """Sentence chrF++ of one prediction against its references; 0–100."""
    from sacrebleu.metrics import CHRF

    return float(CHRF(word_order=2).sentence_score(pred, refs).score)


def rouge_l(preds: list[str], refs: list[list[str]]) -> float:
    """ROUGE-L F-measure (rouge_score, the best reference per example), averaged; 0–1."""
    from rouge_score import rouge_scorer

    if not preds:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    scores = [scorer.score_multi(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs, strict=True)]
    return sum(scores) / len(scores)


def exact_match(preds: list[str], refs: list[list[str]]) -> float:
    """Share of predictions equal to one of their references after trimming and collapsing spaces; 0–1."""
    if not preds:
        return 0.0

    def norm(t: str) -> str:
        return " ".join(t.split())

    hits = [any(norm(p) == norm(r) for r in rs) for p, rs in zip(preds, refs, strict=True)]
    return sum(hits) / len(hits)


def qa_report(
    preds: list[str], refs: list[list[str]], inputs: list[str] | None = None, max_errors: int = 25
) -> EvalReport:
    """SQuAD EM/F1 (score: F1) and the examples whose answer was not exact, lowest F1 first."""
    n = len(preds)
    em, f1 = squad_em_f1(preds, refs)
    per = [squad_row(p, r) for p, r in zip(preds, refs, strict=True)]
    wrong = sorted((i for i in range(n) if per[i][0] < 1), key=lambda i: per[i][1])
    errors = [
        {
            "input": inputs[i] if inputs else "",
            "expected": refs[i][0],
            "predicted": preds[i],
            "f1": round(per[i][1], 4),
        }
        for i in wrong[:max_errors]
    ]
    return EvalReport(
        metric="squad_f1",
        score=round(f1, 4),
        n=n,
        scores={"squad_em": round(em, 4), "squad_f1": round(f1, 4)},
        errors=errors,
    )


def generation_report(
    preds: list[str],
    refs: list[list[str]],
    inputs: list[str] | None = None,
    metric: str = "chrf",
    max_errors: int = 25,
) -> EvalReport:
    """chrF++ (0–100), ROUGE-L and exact match of generated texts; `score` is `metric`'s value.

    The error listing holds the examples with the lowest sentence chrF++, worst first.
    """
    n = len(preds)
    scores = {
        "chrf": round(chrf(preds, refs), 4),
        "rouge_l": round(rouge_l(preds, refs), 4),
        "exact_match": round(exact_match(preds, refs), 4),
    }
    if metric not in scores:
        raise DataError(f"unknown generation metric {metric!r}; use one of {sorted(scores)}")
    per = [chrf_row(p, r) for p, r in zip(preds, refs, strict=True)]
    worst = sorted(range(n), key=lambda i: per[i])
    errors = [
        {
            "input": inputs[i] if inputs else "",
            "expected": refs[i][0],
            "predicted": preds[i],
            "chrf": round(per[i], 2),
        }
        for i in worst[:max_errors]
        if per[i] < 100
    ]
    return EvalReport(metric=metric, score=scores[metric], n=n, scores=scores, errors=errors)


def seq_report(
    metric: str, preds: list[str], refs: list[list[str]], inputs: list[str] | None = None
) -> EvalReport:
    """The report for a non-classification task: `qa_report` for squad_* metrics, else `generation_report`."""
    if metric.startswith("squad"):
        rep = qa_report(preds, refs, inputs)
        if metric == "squad_em":
            rep.metric, rep.score = "squad_em", rep.scores["squad_em"]
        return rep
    return generation_report(preds, refs, inputs, metric)
