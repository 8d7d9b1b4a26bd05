"""Training a round's candidates and choosing between them — one rule for every task kind and caller.

`train_candidates` trains each named student on everything kept so far, scores it on teacher-written
and on real validation rows, and records it as an experiment. `better` / `select` pick the winner:

1. On real rows when both candidates have them and the paired difference is outside its 90% interval
   (a change inside the noise is not a difference).
2. Otherwise on teacher-written rows (score, then macro-F1), later students winning exact ties.
3. Within the kind's tolerance (generation: 10%) of the winner, a faster candidate that is not worse on
   real rows is preferred; with `--max-latency-ms`, candidates over the bound lose to any under it.
"""

from __future__ import annotations

import time
from typing import Any

from p2m.errors import TaskError
from p2m.tools.validation import paired_gain, unit

__all__ = ["train_candidates", "better", "later_round", "select", "signal"]


def _real_rows(c: dict[str, Any]) -> list[float]:
    return ((c.get("report") or {}).get("real") or {}).get("rows") or []


def _teacher_key(c: dict[str, Any]) -> tuple[float, float]:
    return (unit(c.get("metric", "accuracy"), c["score"]), c.get("macro_f1", 0.0))


def signal(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How `b` compares with `a`: {by: real|teacher, delta, significant, ...} (deltas on a 0–1 scale)."""
    ra, rb = _real_rows(a), _real_rows(b)
    if ra and len(ra) == len(rb):
        g = paired_gain(ra, rb, a.get("metric", "accuracy"))
        if g["significant"]:
            return {"by": "real", **g}
        t = _teacher_gain(a, b)
        return {"by": "teacher" if t["significant"] else "real", **(t if t["significant"] else g),
                "real_delta": g["delta"]}  # fmt: skip
    return {"by": "teacher", **_teacher_gain(a, b)}


def _teacher_gain(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    ta, tb = (a.get("report") or {}).get("rows") or [], (b.get("report") or {}).get("rows") or []
    if ta and len(ta) == len(tb):
        return paired_gain(ta, tb, a.get("metric", "accuracy"))
    delta = _teacher_key(b)[0] - _teacher_key(a)[0]
    return {
        "delta": round(delta, 4),
        "low": delta,
        "high": delta,
        "rows": 0,
        "significant": abs(delta) > 0.005,
    }


def better(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The better of two candidates (b wins exact ties: later students are the stronger ones)."""
    ra, rb = _real_rows(a), _real_rows(b)
    if ra and len(ra) == len(rb):
        g = paired_gain(ra, rb, a.get("metric", "accuracy"))
        if g["significant"]:
            return b if g["delta"] > 0 else a
    return b if _teacher_key(b) >= _teacher_key(a) else a


def later_round(a: dict[str, Any], b: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The better of an earlier round's student `a` and a later round's `b`, which trained on at least the
    same rows: `b` unless `a` is ahead beyond the noise (`signal`: real rows first, then the same
    teacher-written rows — a lead inside the 90% interval is not a lead; on ten rows one row is 0.1)."""
    g = signal(a, b)
    if not g["significant"]:
        return b, "within the noise of the earlier rounds, and trained on more rows"
    if g["delta"] < 0:
        return a, f"better on {g['by']} rows beyond the noise ({-g['delta']:+.3f})"
    return b, f"better on {g['by']} rows"


def select(cands: list[dict[str, Any]], tolerance: float = 0.0, max_latency_ms: float | None = None
           ) -> tuple[dict[str, Any], str]:  # fmt: skip
    """The candidate to keep and why."""
    if not cands:
        raise TaskError("no student was trained")
    pool = cands
    note = ""
    if max_latency_ms:
        fast = [c for c in cands if c.get("ms_per_example", 0) <= max_latency_ms]
        if fast and len(fast) < len(cands):
            pool, note = (
                fast,
                f"; {len(cands) - len(fast)} over the {max_latency_ms:g} ms/example bound left out",
            )
        elif not fast:
            note = f"; none meets the {max_latency_ms:g} ms/example bound"
    # with a tolerance, exact ties go to the earlier (bigger) student, so that the speed rule below decides
    order = pool if tolerance <= 0 else pool[::-1]
    best = order[0]
    for c in order[1:]:
        best = better(best, c)
    why = f"{best['name']} has the best validation score ({describe(best)})"
    if tolerance > 0:
        top = _teacher_key(best)[0]

        def acceptable(c: dict[str, Any]) -> bool:  # faster, within the tolerance, not worse on real rows
            if c is best or c.get("ms_per_example", 1e9) >= best.get("ms_per_example", 0):
                return False
            if _teacher_key(c)[0] < top * (1 - tolerance):
                return False
            rb, rc = _real_rows(best), _real_rows(c)
            g = paired_gain(rb, rc, c.get("metric", "accuracy")) if rb and len(rb) == len(rc) else None
            return not (g and g["significant"] and g["delta"] < 0)

        quicker = [c for c in pool if acceptable(c)]
        if quicker:
            fast = min(quicker, key=lambda c: c["ms_per_example"])
            speed = best["ms_per_example"] / max(fast["ms_per_example"], 1e-9)
            why = (f"{fast['name']}: {describe(fast)}, within {tolerance:.0%} of {best['name']} "
                   f"({describe(best)}) and {speed:.1f}× as fast")  # fmt: skip
            best = fast
    return best, why + note


def describe(c: dict[str, Any]) -> str:
    """'real 0.750 on 4 rows, teacher 0.93 on 60 rows, 3.1 ms/example'."""
    parts = []
    real = c.get("real")
    if real:
        parts.append(f"real {real['score']:.3f} on {real['rows']} rows")
    t = c.get("teacher") or {}
    parts.append(f"teacher-written {c['score']:.3f} on {t.get('rows', '?')} rows")
    if c.get("ms_per_example"):
        parts.append(f"{c['ms_per_example']:.1f} ms/example")
    return ", ".join(parts)


def _order(r: Any, students: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Students with what they need first; needs trained in an earlier round are loaded, not trained."""
    infos = {s.name: s for s in r.kind.students(r.spec)}
    for n in students:
        info = infos.get(n) or r.kind.info(n)
        if info is None:
            raise TaskError(f"no student {n!r} for {r.spec.task_type}; one of {list(infos)}")
        infos[n] = info
    order: list[str] = []
    earlier: dict[str, Any] = {}
    for name in students:
        for need in infos[name].needs:
            if need in order or need in students:
                continue
            done = [
                e for e in r.store.experiments(r.run_id) if e["name"].endswith("-" + need) and e["model_path"]
            ]
            if done:
                earlier[need] = r.kind.load(done[-1]["model_path"])
            else:
                order.append(need)
        if name not in order:
            order.append(name)
    order.sort(key=lambda n: [need for need in infos[n].needs if need in order] != [])  # needs first
    return order, earlier


def train_candidates(r: Any, students: list[str], overrides: dict[str, Any], prefix: str, select_fn: Any = select
                     ) -> dict[str, Any]:  # fmt: skip
    """Train, score and record each student; returns {best, candidates, n_train, n_teacher_val, n_real, why}."""
    r.store.delete_experiments(r.run_id, prefix)  # a round killed mid-training trains again
    train, teacher, real = r.data()
    if not train:
        raise TaskError("no training rows are left; give examples, or raise --examples")
    val = teacher or [(x, refs[0]) for x, refs, _ in real]  # the trainers' own choices (best epoch, C)
    if not val:
        raise TaskError("no validation rows; give more examples or raise the example budget")
    settings = r.settings(overrides)
    order, earlier = _order(r, students)
    infos = {n: r.kind.info(n) for n in order}
    cands = []
    for name in order:
        t0 = time.perf_counter()
        student, params = r.kind.train(
            name, train, val, r.spec, settings, progress=r.progress, earlier=earlier
        )
        earlier[name] = student
        seconds = time.perf_counter() - t0
        scored = r.estimates_of(student, teacher, real)
        fit = r.train_fit(student, train)
        first = scored["teacher"] or scored["real"]
        path = r.save_candidate(prefix + name, student)
        rep = {**{k: v for k, v in first.items() if k != "estimate"}, "real": scored["real"],
               "estimates": {s: (scored[s] or {}).get("estimate") for s in ("teacher", "real")}}  # fmt: skip
        r.store.add_experiment(r.run_id, {"name": prefix + name, "student": student.kind, "params": params,
                                          "n_train": len(train), "report": rep, "model_path": str(path),
                                          "seconds": seconds})  # fmt: skip
        cand = {"name": prefix + name, "student": name, "kind": student.kind, "base": infos[name].base,
                "metric": first["metric"], "score": first["score"],
                "macro_f1": first.get("scores", {}).get("macro_f1", 0.0), "ms_per_example": first["ms_per_example"],
                "teacher": rep["estimates"]["teacher"], "real": rep["estimates"]["real"], "path": str(path),
                "train_fit": fit,
                "report": {**{k: v for k, v in first.items() if k != "estimate"}, "real": scored["real"]}}  # fmt: skip
        cands.append(cand)
        r.log(f"{prefix}{name}: {describe(cand)}")
    mine = [c for c in cands if c["student"] in students]
    best, why = select_fn(mine, r.kind.select_tolerance, r.opts.max_latency_ms)
    r.decide("select", why, name=best["name"])
    return {"best": best, "candidates": cands, "n_train": len(train), "n_teacher_val": len(teacher),
            "n_real": len(real), "why": why}  # fmt: skip
