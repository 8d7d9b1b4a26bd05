"""How a chat version's scores are shown: real rows first, then teacher-written rows, each with its rows
and 90% interval — in chat replies, the version table, the web app's status and its plot.

A version record (agent/refine.train_version) holds both estimates (`real`, `teacher`: {metric, score,
rows, low, high}); a teacher-written number is never shown without saying it is on teacher-written rows.
These are pure functions (the plot writes a PNG), shared by the chat, the terminal and the web app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["metric_name", "fmt_score", "estimate_text", "scores_line", "estimates_of", "compare",
           "history_table", "version_cells", "VERSION_HEADERS", "write_version_plot"]  # fmt: skip

_NAMES = {"accuracy": "accuracy", "squad_f1": "SQuAD F1", "squad_em": "SQuAD exact match", "chrf": "chrF++",
          "rouge_l": "ROUGE-L", "exact_match": "exact match", "macro_f1": "macro-F1"}  # fmt: skip
VERSION_HEADERS = ["version", "change", "metric", "real rows", "teacher-written rows", "train"]


def metric_name(metric: str) -> str:
    """'squad_f1' → 'SQuAD F1'."""
    return _NAMES.get(metric, metric)


def fmt_score(metric: str, value: float | None) -> str:
    """A score as p2m prints it: chrF++ on its 0–100 scale with one decimal, others with three."""
    if value is None:
        return "—"
    return f"{value:.1f}" if metric == "chrf" else f"{value:.3f}"


def estimates_of(v: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(real, teacher) estimates of a version record; records from before both were kept get a teacher one
    from their score."""
    teacher = v.get("teacher") or {"metric": v.get("metric", "accuracy"), "score": v.get("score", 0.0),
                                   "rows": v.get("n_val", 0), "low": None, "high": None}  # fmt: skip
    return v.get("real") or None, teacher


def _interval(est: dict[str, Any]) -> str:
    """'90%: 0.41–0.93' (empty when the record has no interval)."""
    if est.get("low") is None or est.get("high") is None:
        return ""
    m = est.get("metric", "accuracy")
    return f"90%: {fmt_score(m, est['low'])}–{fmt_score(m, est['high'])}"


def estimate_text(est: dict[str, Any] | None, source: str, bold: bool = False) -> str:
    """'accuracy 0.750 on 4 real rows (90%: 0.41–0.93)'; with no real rows, says there are none yet."""
    if not est or not est.get("rows"):
        if source == "real":
            return "no real rows yet (paste or upload examples to check the model on them)"
        return "no teacher-written rows"
    m, rows = est.get("metric", "accuracy"), est["rows"]
    score = fmt_score(m, est["score"])
    what = "real" if source == "real" else "teacher-written"
    ci = f" ({_interval(est)})" if _interval(est) else ""
    return f"{metric_name(m)} {f'**{score}**' if bold else score} on {rows} {what} row{'s' * (rows != 1)}{ci}"


def scores_line(v: dict[str, Any], bold: bool = False) -> str:
    """Both estimates of a version, real rows first: 'accuracy 0.750 on 4 real rows (…); 0.930 on …'."""
    real, teacher = estimates_of(v)
    return f"{estimate_text(real, 'real', bold)}; {estimate_text(teacher, 'teacher', bold)}"


def _cell(est: dict[str, Any] | None) -> str:
    """'0.750 (4 rows; 90%: 0.410–0.930)'."""
    if not est or not est.get("rows"):
        return "—"
    ci = f"; {_interval(est)}" if _interval(est) else ""
    rows = est["rows"]
    return f"{fmt_score(est.get('metric', 'accuracy'), est['score'])} ({rows} row{'s' * (rows != 1)}{ci})"


def version_cells(v: dict[str, Any]) -> list[Any]:
    """One row of the web app's version table (VERSION_HEADERS): real rows before teacher-written ones."""
    real, teacher = estimates_of(v)
    return [f"v{v['version']}", v.get("note", ""), metric_name(teacher.get("metric", "accuracy")), _cell(real),
            _cell(teacher), v.get("n_train", 0)]  # fmt: skip


def compare(prev: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """A markdown table of two versions side by side (the previous one may be missing), real rows first."""
    real_a, teach_a = estimates_of(prev) if prev else (None, {})
    real_b, teach_b = estimates_of(new)
    metric = teach_b.get("metric", "accuracy")
    name = metric_name(metric)

    def about(est: dict[str, Any] | None) -> str:
        if not est or not est.get("rows"):
            return ""
        return f" ({est['rows']}; {_interval(est)})" if _interval(est) else f" ({est['rows']})"

    # (what, before, after, kind): kind "score" is on the task's metric, "f1" on 0–1, "count" a number of rows
    rows: list[tuple[str, Any, Any, str]] = [
        (
            f"{name}, real rows{about(real_b)}",
            (real_a or {}).get("score"),
            (real_b or {}).get("score"),
            "score",
        ),
        (
            f"{name}, teacher-written rows{about(teach_b)}",
            teach_a.get("score"),
            teach_b.get("score"),
            "score",
        ),
    ]
    if metric == "accuracy" and new.get("macro_f1") is not None:
        rows.append(("macro-F1, teacher-written rows", (prev or {}).get("macro_f1"), new["macro_f1"], "f1"))
    old_labels, new_labels = (prev or {}).get("per_label") or {}, new.get("per_label") or {}
    rows += [(f"F1 {lab}, teacher-written rows", old_labels.get(lab), new_labels.get(lab), "f1")
             for lab in dict.fromkeys([*old_labels, *new_labels])]  # fmt: skip
    rows += [("training examples", (prev or {}).get("n_train"), new.get("n_train"), "count"),
             ("real validation rows", (prev or {}).get("n_real"), new.get("n_real"), "count"),
             ("teacher-written validation rows", (prev or {}).get("n_val"), new.get("n_val"), "count")]  # fmt: skip
    a = f"v{prev['version']}" if prev else "before"
    lines = [f"| | {a} | v{new['version']} | change |", "|---|---|---|---|"]
    for what, x, y, kind in rows:
        show = (lambda v: fmt_score(metric, v)) if kind == "score" else _plain
        delta = ""
        if isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool):
            d = y - x
            delta = (
                f"{d:+d}"
                if kind == "count"
                else (f"{d:+.1f}" if kind == "score" and metric == "chrf" else f"{d:+.3f}")
            )
        lines.append(f"| {what} | {show(x)} | {show(y)} | {delta} |")
    moved = [(what, a_.get("rows"), b_.get("rows")) for what, a_, b_ in
             (("real", real_a or {}, real_b or {}), ("teacher-written", teach_a, teach_b))
             if a_.get("rows") and b_.get("rows") and a_.get("rows") != b_.get("rows")]  # fmt: skip
    for what, x, y in moved:
        lines.append(
            f"\nThe {what} rows changed from {x} to {y}: the two {what}-row scores are on different rows."
        )
    return "\n".join(lines)


def _plain(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("—" if value is None else str(value))


def history_table(versions: list[dict[str, Any]]) -> str:
    """A markdown table of every trained version: its change, both estimates (real rows first), its data."""
    lines = ["| version | change | on real rows | on teacher-written rows | training examples |",
             "|---|---|---|---|---|"]  # fmt: skip
    for v in versions:
        real, teacher = estimates_of(v)
        lines.append(f"| v{v['version']} | {v.get('note', '')} | {_metric_cell(real)} | {_metric_cell(teacher)} | "
                     f"{v.get('n_train', '')} |")  # fmt: skip
    return "\n".join(lines)


def _metric_cell(est: dict[str, Any] | None) -> str:
    if not est or not est.get("rows"):
        return "—"
    return f"{metric_name(est.get('metric', 'accuracy'))} {_cell(est)}"


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def write_version_plot(versions: list[dict[str, Any]], path: str | Path) -> Path | None:
    """A PNG of each version's score on real rows (with its 90% interval) and on teacher-written rows."""
    if not versions:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = estimates_of(versions[-1])[1].get("metric", "accuracy")
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    xs = list(range(1, len(versions) + 1))
    real = [(x, estimates_of(v)[0]) for x, v in zip(xs, versions, strict=True)]
    real = [(x, e) for x, e in real if e and e.get("rows")]
    handles = []
    if real:
        ys = [e["score"] for _, e in real]
        lo = [e["score"] - _or(e.get("low"), e["score"]) for _, e in real]
        hi = [_or(e.get("high"), e["score"]) - e["score"] for _, e in real]
        last = versions[real[-1][0] - 1]["version"]
        handles.append(ax.errorbar([x for x, _ in real], ys, yerr=[lo, hi], marker="s", capsize=4,
                                   label=f"real rows, 90% interval ({real[-1][1]['rows']} in v{last})"))  # fmt: skip
    teacher = [estimates_of(v)[1] for v in versions]
    (line,) = ax.plot(xs, [t.get("score") for t in teacher], marker="o", linestyle="--", alpha=0.7,
                      label="teacher-written rows (flattering: the teacher wrote the training rows too)")  # fmt: skip
    handles.append(line)
    ax.set_xticks(xs, [f"v{v['version']}" for v in versions])
    ax.set_xlabel("version")
    ax.set_ylabel(metric_name(metric))
    ax.set_title("Score per version: real rows first")
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
