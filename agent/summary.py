"""The decider's view of a run, built from the run store: estimates per round, gains with their noise,
weak labels, data per source, the students it may switch to, the budget."""

from __future__ import annotations

from collections import Counter
from typing import Any

from p2m.agent.policy import Summary
from p2m.agent.scoring import signal
from p2m.errors import ConfigError, P2MError
from p2m.tools.validation import unit

__all__ = ["build_summary", "example_counts", "round_view"]


def _unit(e: dict[str, Any] | None) -> dict[str, Any] | None:
    if not e:
        return None
    m = e.get("metric", "accuracy")
    return {**e, "score": unit(m, e["score"]), "low": unit(m, e["low"]), "high": unit(m, e["high"])}


def round_view(rnd: dict[str, Any]) -> dict[str, Any]:
    """One round's kept student as the decider sees it (scores on a 0–1 scale)."""
    b = rnd["best"]
    return {"student": b.get("student"), "teacher": _unit(b.get("teacher")), "real": _unit(b.get("real")),
            "ms_per_example": b.get("ms_per_example"), "train_fit": b.get("train_fit")}  # fmt: skip


def example_counts(r: Any) -> dict[str, dict[str, int]]:
    """Kept examples per label (or "all") and source kind."""
    per: dict[str, Counter] = {}
    clf = r.spec.task_type == "classification"
    for lab in r.spec.labels if clf else []:
        per[lab] = Counter()
    for row in r.store.examples(r.run_id, kept=True):
        per.setdefault(row["output"] if clf else "all", Counter())[row["source"].split(":")[0]] += 1
    return {k: dict(v) for k, v in per.items()}


def _index_has_data(r: Any) -> bool:
    try:
        from p2m.memory.vectors import open_index

        index = open_index(r.opts.chroma_url)
        return any(index.count(k) for k in ("datasets", "local"))
    except ConfigError:
        return False


def _catalogue(r: Any) -> list[dict[str, Any]]:
    """Other base models the kind could train (the HF cache, the model index, the Hub when online)."""
    try:
        index = None
        from p2m.memory.vectors import open_index

        found = open_index(r.opts.chroma_url)
        index = found if found.count("models") else None
    except Exception:  # no index (or an unreachable Chroma server): the cache and the Hub still count
        index = None
    try:
        return r.kind.catalogue(r.spec, index=index)
    except P2MError as e:
        r.log(f"model catalogue unavailable: {e}")
        return []


def build_summary(planner: Any, k: int) -> Summary:
    """The Summary after round `k` (agent/policy.py)."""
    r = planner.r
    spec = r.spec
    rounds = planner.rounds()
    views = [round_view(rnd) for rnd in rounds]
    best = (rounds[k]["best"] if k < len(rounds) else rounds[-1]["best"]) if rounds else {}
    rep = best.get("report") or {}
    per_label: dict[str, float] = {}
    confusions: list[tuple[str, str, int]] = []
    if spec.task_type == "classification":  # a label is as weak as the worse of its two estimates says
        labels = rep.get("labels") or spec.labels
        real = rep.get("real") or {}
        for src in (rep, real):
            for lab, v in (src.get("per_label") or {}).items():
                if src is rep or v.get("support", 0) > 0:
                    per_label[lab] = min(per_label.get(lab, 1.0), float(v.get("f1", 0.0)))
        pairs: Counter = Counter()
        for src in (rep, real):
            for i, row in enumerate(src.get("confusion") or []):
                for j, n in enumerate(row):
                    if i != j and n:
                        pairs[(labels[i], labels[j])] += int(n)
        confusions = sorted(((t, p, n) for (t, p), n in pairs.items()), key=lambda c: -c[2])
    actions = []
    for dec in r.store.decisions(r.run_id):
        rnd = (dec.get("args") or {}).get("round")
        if rnd is None or dec["action"].startswith("rejected") or dec["action"] == "stop":
            continue
        a = {
            "action": dec["action"],
            "args": {x: v for x, v in dec["args"].items() if x not in ("round", "why")},
        }
        if 0 < rnd < len(rounds):
            g = signal(rounds[rnd - 1]["best"], rounds[rnd]["best"])
            a.update(gain=g["delta"], significant=g["significant"], by=g["by"])
        actions.append(a)
    tried = {c["student"] for rnd in rounds for c in rnd["candidates"]}
    speed = {c["student"]: c.get("ms_per_example") for rnd in rounds for c in rnd["candidates"]}
    models = [{"id": s.name, "base": s.base, "params_m": s.params_m, "fits": True, "why_not": None,
               "tried": s.name in tried, "ms_per_example": speed.get(s.name), "note": s.note}
              for s in r.kind.students(spec)]  # fmt: skip
    for m in _catalogue(r):
        models.append({**m, "tried": m["id"] in tried, "ms_per_example": speed.get(m["id"])})
    if not r.opts.finetune:  # the user asked for the quick students only: nothing bigger is offered
        first = set(r.first_students())
        for m in models:
            if m["id"] not in first and not m["tried"]:
                m.update(fits=False, why_not="--no-finetune asks for the quick students only")
    gen = r.store.examples(r.run_id, kept=None, source_prefix="generated:")
    led = r.store.ledger(r.run_id)
    index_rows = (r.store.stage_info(r.run_id, "retrieve") or {}).get("rows", 0)
    return Summary(
        target=planner.plan.target, rounds=views, per_label=per_label, confusions=confusions,
        examples=example_counts(r), actions=actions, budget=planner.budget(),
        calls_per_example=(led["calls"] - led["cached"]) / max(1, sum(1 for x in gen if x["kept"])),
        seconds_per_round=planner.elapsed() / max(1, len(rounds)),
        retrieval_possible=spec.task_type == "classification" and bool(r.opts.retrieve) and index_rows == 0
        and _index_has_data(r),
        models=models, task_type=spec.task_type, max_latency_ms=r.opts.max_latency_ms,
    )  # fmt: skip
