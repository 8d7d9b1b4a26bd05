"""A run's report.json, model card and data files, written when a student is deployed.

The report leads with what a user can trust: `estimates` holds the chosen student's score on real rows
(when there are any) and on teacher-written rows, each with its row count and 90% interval;
`validation` keeps the detailed teacher-row report (per label, confusions, errors) and `real_eval` the
real-row one.
"""

from __future__ import annotations

import json
from typing import Any

from p2m.tools import deploy

__all__ = ["build_report", "write_outputs", "models_tried", "trajectory", "write_plot"]


def _strip(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored report without its per-row scores (kept in the store, not in report.json)."""
    if not report:
        return None
    return {k: v for k, v in report.items() if k not in ("rows", "real", "estimates")}


def models_tried(r: Any) -> list[dict[str, Any]]:
    """Every experiment of the run: name, student, both estimates and speed, in order."""
    out = []
    for e in r.store.experiments(r.run_id):
        rep = e["report"] or {}
        est = rep.get("estimates") or {}
        out.append({"name": e["name"], "kind": e["student"], "teacher": est.get("teacher"), "real": est.get("real"),
                    "score": rep.get("score"), "ms_per_example": rep.get("ms_per_example"), "n_train": e["n_train"],
                    "seconds": round(e["seconds"] or 0.0, 1)})  # fmt: skip
    return out


def build_report(
    r: Any, best: dict[str, Any], candidates: list[dict[str, Any]], extra: dict[str, Any]
) -> dict[str, Any]:
    """The run's report: the task, the chosen student, both estimates, the data, cost and decisions."""
    spec = r.spec
    train, teacher, real = r.data()
    stages = r.store.stages(r.run_id)  # in the order they finished: rounds, then chat versions
    gens = [v for k, v in stages.items() if k == "generate" or k.startswith("generate:")]
    curs = [v for k, v in stages.items() if k == "curate" or k.startswith("curate:")]
    user_eval = None
    if r.eval_rows():
        user_eval = _eval_file_report(r, best)
    return {
        "run": r.run_id,
        "task": spec.to_dict(),
        "student": {
            "kind": best["kind"],
            "base": best.get("base", ""),
            "selected": best["name"],
            "ms_per_example": best.get("ms_per_example"),
        },  # fmt: skip
        "estimates": {"real": best.get("real"), "teacher": best.get("teacher")},
        "validation": _strip(best["report"]),
        "real_eval": _strip((best.get("report") or {}).get("real")),
        "candidates": [
            {k: c.get(k) for k in ("name", "kind", "score", "macro_f1", "ms_per_example", "teacher", "real")}
            for c in candidates
        ],  # fmt: skip
        "models_tried": models_tried(r),
        "user_eval": user_eval,
        "data": {
            "train": len(train),
            "validation": len(teacher),
            "real_validation": len(real),
            "real_sources": sorted({s.split(":")[0] for _, _, s in real}),
            "generation": _sum_generation(gens),
            "curation": curs[-1] if curs else {},
            "retrieval": r.store.stage_info(r.run_id, "retrieve") or {},
        },  # fmt: skip
        "teacher": r.opts.llm.model or ("embedded" if r.opts.llm.base_url is None else r.opts.llm.base_url),
        "cost": r.store.ledger(r.run_id),
        "decisions": r.store.decisions(r.run_id),
        **extra,
    }


def _eval_file_report(r: Any, best: dict[str, Any]) -> dict[str, Any]:
    """The chosen student on the `--eval` file alone (also part of the real rows)."""
    import time

    rows = r.eval_rows()
    student = r.kind.load(best["path"])
    inputs = [x for x, _ in rows]
    t0 = time.perf_counter()
    preds = student.predict(inputs)
    rep = r.kind.score(r.spec, preds, [refs for _, refs in rows], inputs)
    rep.ms_per_example = round(1000 * (time.perf_counter() - t0) / len(rows), 3)
    return rep.to_dict()


def _sum_generation(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The generation stats of every round together."""
    if not rounds:
        return {}
    total = dict(rounds[0])
    for g in rounds[1:]:
        for key in ("requests", "usable", "seconds"):
            total[key] = total.get(key, 0) + g.get(key, 0)
        total["stopped_by"] = g.get("stopped_by", total.get("stopped_by"))
    total["rounds"] = len(rounds)
    if total.get("seconds"):
        total["kept_per_second"] = round(total.get("usable", 0) / total["seconds"], 3)
    return total


def write_outputs(r: Any, best: dict[str, Any], report: dict[str, Any]) -> None:
    """model/ (the chosen candidate), README.md (the card), data/, task.json and report.json."""
    deploy.copy_model(best["path"], r.folder / "model")
    train, teacher, real = r.data()
    deploy.write_run_folder(r.folder, r.spec, report, train, teacher, teacher=r.teacher_name())
    if real:
        deploy.write_data(r.folder, "real_validation", [(x, refs[0]) for x, refs, _ in real])
    (r.folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))


def trajectory(store: Any, run_id: str) -> list[dict[str, Any]]:
    """Both validation scores per experiment, in order."""
    out = []
    for e in store.experiments(run_id):
        est = (e["report"] or {}).get("estimates") or {}
        real = est.get("real") or {}
        out.append({"name": e["name"], "score": e["report"]["score"], "real": real.get("score"),
                    "real_rows": real.get("rows", 0), "real_low": real.get("low"), "real_high": real.get("high"),
                    "n_train": e["n_train"],
                    "ms_per_example": e["report"].get("ms_per_example")})  # fmt: skip
    return out


def write_plot(store: Any, run_id: str, path: Any) -> Any:
    """A PNG of both validation scores over experiments (teacher-written rows, real rows)."""
    points = trajectory(store, run_id)
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    xs = list(range(1, len(points) + 1))
    real = [(x, p) for x, p in zip(xs, points, strict=True) if p["real"] is not None]
    if real:  # real rows first, with their 90% intervals: the teacher-written ones flatter the student
        rows = max(p["real_rows"] for _, p in real)
        ax.errorbar([x for x, _ in real], [p["real"] for _, p in real],
                    yerr=[[p["real"] - p["real_low"] for _, p in real], [p["real_high"] - p["real"] for _, p in real]],
                    marker="s", capsize=3, label=f"real rows ({rows}), 90% interval")  # fmt: skip
    ax.plot(xs, [p["score"] for p in points], marker="o", alpha=0.6, label="teacher-written rows")
    for x, p in zip(xs, points, strict=True):
        ax.annotate(
            p["name"], (x, p["score"]), fontsize=7, rotation=30, textcoords="offset points", xytext=(0, 6)
        )
    ax.set_xlabel("experiment")
    ax.set_ylabel("validation score")
    ax.set_title(f"{run_id}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
