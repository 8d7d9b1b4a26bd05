"""What the planner may do next: the legal actions, a rule policy, and the guard every LLM decision passes.

The decider sees a compact summary of the run (both validation estimates per round, per-label scores
and confusions for classification, data per source, the students it may switch to, the latency bound,
the budget left), never raw logs. Gains are judged with their uncertainty (agent/scoring.signal): a
change inside the 90% interval is not a gain, and the real-row signal decides whenever it can. An
LLM's decision is checked by `guard` against that summary — an illegal or wasteful decision (over
budget, a label already perfect, a model that does not fit or was tried, repeating what did not
help) is rejected with the reason, and `rule_decide` decides instead. Both are pure functions of the
summary, so they are tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from p2m.tools.types import Decision

__all__ = ["ACTIONS", "Budget", "Summary", "rule_decide", "guard", "MIN_REAL_ROWS"]

# "tune" (epochs, learning rate) was taken out (issue 15): the rule policy never chose it, no measured run
# chose it, and every training loop already keeps its best epoch
ACTIONS = ("generate_more", "retrieve", "switch_model", "stop")
MIN_REAL_ROWS = 10  # below this many real rows the target is judged on teacher-written rows (said so)
UNDERFIT = 0.85  # a student scoring below this on its own training rows is too small for the data
_MIN_ROUND = 40  # the smallest generation round worth its training cost


@dataclass
class Budget:
    """What a run may spend; 0 means no cap."""

    minutes: float = 0.0
    llm_calls: int = 0
    used_seconds: float = 0.0
    used_calls: int = 0

    def calls_left(self) -> float:
        return float("inf") if not self.llm_calls else max(0, self.llm_calls - self.used_calls)

    def seconds_left(self) -> float:
        return float("inf") if not self.minutes else max(0.0, self.minutes * 60 - self.used_seconds)

    def spent(self) -> bool:
        return self.calls_left() <= 0 or self.seconds_left() <= 0


@dataclass
class Summary:
    """The compact run state a decider reads.

    `rounds` holds, per training round, the kept student's estimates {"teacher": {score, rows, low, high},
    "real": {…} | None, "student", "ms_per_example"} with scores on a 0–1 scale; `actions` the earlier
    decisions with the change after each ({gain, significant, by}).
    """

    target: float | None
    rounds: list[dict[str, Any]]
    per_label: dict[str, float]  # F1 per label of the best experiment (classification; empty otherwise)
    confusions: list[tuple[str, str, int]]  # (true, predicted, count), largest first
    examples: dict[str, dict[str, int]]  # label (or "all") → source kind → count
    actions: list[dict[str, Any]]
    budget: Budget
    calls_per_example: float  # teacher calls one kept example has cost so far
    seconds_per_round: float  # wall time of one generate+train round so far
    retrieval_possible: bool
    models: list[dict[str, Any]] = field(
        default_factory=list
    )  # {id, base, params_m, fits, why_not, tried, ms}
    task_type: str = "classification"
    max_latency_ms: float | None = None

    def current(self) -> dict[str, Any]:
        return self.rounds[-1] if self.rounds else {}

    def best(self) -> tuple[float, str]:
        """The best round's score on the estimate the target is judged on, and which estimate that is."""
        best, what = 0.0, "teacher-written"
        for rnd in self.rounds:
            score, src = _judged(rnd)
            if score >= best:
                best, what = score, src
        return best, what

    def reached(self) -> str | None:
        """Why the target counts as reached, or None. With fewer than MIN_REAL_ROWS real rows the
        teacher-written estimate judges, unless the real rows' 90% interval lies wholly below the target."""
        if self.target is None:
            return None
        for rnd in self.rounds:
            score, src = _judged(rnd)
            real = rnd.get("real") or {}
            if score >= self.target and not (
                src != "real" and real.get("rows") and real["high"] < self.target
            ):
                return f"{score:.3f} on {src} rows"
        return None

    def to_prompt(self) -> dict[str, Any]:
        """What the LLM decider is shown."""

        def est(e: dict[str, Any] | None) -> Any:
            return (
                None
                if not e
                else f"{e['score']:.3f} on {e['rows']} rows (90%: {e['low']:.2f}-{e['high']:.2f})"
            )

        return {
            "task_type": self.task_type,
            "target": self.target,
            "rounds": [
                {
                    "student": r.get("student"),
                    "real_rows": est(r.get("real")),
                    "teacher_written_rows": est(r.get("teacher")),
                    "ms_per_example": r.get("ms_per_example"),
                }
                for r in self.rounds[-4:]
            ],  # fmt: skip
            "per_label_f1": {k: round(v, 3) for k, v in self.per_label.items()},
            "top_confusions": [f"{t} → {p}: {n}" for t, p, n in self.confusions[:5]],
            "examples": self.examples,
            "previous_actions": [
                {
                    "action": a["action"],
                    "args": a.get("args", {}),
                    "gain": a.get("gain"),
                    "significant": a.get("significant"),
                }
                for a in self.actions[-6:]
            ],  # fmt: skip
            "llm_calls_left": None if self.budget.calls_left() == float("inf") else self.budget.calls_left(),
            "seconds_left": None
            if self.budget.seconds_left() == float("inf")
            else round(self.budget.seconds_left()),
            "retrieval_possible": self.retrieval_possible,
            "max_latency_ms": self.max_latency_ms,
            "models": [
                {
                    k: m.get(k)
                    for k in ("id", "base", "params_m", "fits", "why_not", "tried", "ms_per_example")
                }
                for m in self.models
            ],  # fmt: skip
        }


def _judged(rnd: dict[str, Any]) -> tuple[float, str]:
    real = rnd.get("real") or {}
    if real.get("rows", 0) >= MIN_REAL_ROWS:
        return real["score"], "real"
    return (rnd.get("teacher") or {}).get("score", 0.0), "teacher-written"


def _round_size(s: Summary) -> int:
    """Examples one more round can afford, from the calls each example has cost so far."""
    n = 50 * max(1, len(s.per_label)) if s.per_label else 60
    if s.calls_per_example > 0 and s.budget.calls_left() != float("inf"):
        n = min(n, int(s.budget.calls_left() / s.calls_per_example))
    return n


def _min_round(s: Summary) -> int:
    """The smallest round worth its training cost: _MIN_ROUND examples, or a quarter more data when the run
    has little (code from the 135M teacher costs ~3.5 calls an example: half a 150-call budget bought 17)."""
    have = sum(n for by_source in s.examples.values() for n in by_source.values())
    return min(_MIN_ROUND, max(8, have // 4))


def _model(s: Summary, name: Any) -> dict[str, Any] | None:
    return next((m for m in s.models if m["id"] == name), None)


def guard(d: Decision, s: Summary) -> str | None:
    """Why a decision is illegal or wasteful here, or None when it may run."""
    if d.action not in ACTIONS:
        return f"unknown action {d.action!r}; legal: {', '.join(ACTIONS)}"
    if d.action == "stop":
        return None
    if s.budget.spent():
        return "the budget is spent; only stop is possible"
    reached = s.reached()
    if reached:
        return f"the target {s.target} is reached ({reached}); stop"
    last_same = [a for a in s.actions if a["action"] == d.action and a.get("args") == d.args]
    if last_same and last_same[-1].get("gain") is not None and not last_same[-1].get("significant"):
        return f"{d.action} with the same arguments already ran and did not help (change {last_same[-1]['gain']:+.3f}, within the noise)"
    if d.action == "generate_more":
        labels = d.args.get("labels") or list(s.per_label)
        unknown = [lab for lab in labels if s.per_label and lab not in s.per_label]
        if unknown:
            return f"unknown labels {unknown}"
        perfect = [lab for lab in labels if s.per_label.get(lab, 0) >= 0.999]
        weak = [lab for lab, v in s.per_label.items() if v < 0.999]
        if s.per_label and perfect and len(perfect) == len(labels) and weak:  # all perfect: rows too easy
            return f"labels {perfect} are already perfect on validation; {', '.join(weak)} are not"
        n = int(d.args.get("n") or 0)
        if n <= 0:
            return "generate_more needs n > 0"
        if s.calls_per_example and n * s.calls_per_example > s.budget.calls_left():
            return f"{n} examples cost about {n * s.calls_per_example:.0f} calls; {s.budget.calls_left():.0f} left"
        if s.seconds_per_round and s.seconds_per_round > s.budget.seconds_left():
            return "a round takes longer than the time left"
    if d.action == "retrieve" and not s.retrieval_possible:
        return "nothing loadable to retrieve (empty index, another task type, or retrieval already used everything)"
    if d.action == "switch_model":
        name = d.args.get("name")
        model = _model(s, name)
        if model is None:
            return f"unknown model {name!r}; candidates: {[m['id'] for m in s.models]}"
        if not model.get("fits", False):
            return f"{name} does not fit: {model.get('why_not') or 'not usable here'}"
        if model.get("tried"):
            return f"{name} was already tried"
    return None


def _switch(s: Summary) -> Decision | None:
    """switch_model when the latency bound is missed (to the smallest untried student that fits), or when the
    student underfits (to a bigger one, if it is not known to miss the bound)."""
    cur = s.current()
    ms = cur.get("ms_per_example")
    cur_m = _model(s, cur.get("student")) or {}
    fit = cur.get("train_fit")
    val = (cur.get("teacher") or {}).get("score", 1.0)
    # underfit: low on its own training rows and on validation (label noise alone leaves validation higher)
    if (
        fit is not None
        and fit < UNDERFIT
        and val < UNDERFIT
        and not (s.max_latency_ms and ms and ms > s.max_latency_ms)
    ):
        bigger = [m for m in s.models if m.get("fits") and not m.get("tried")
                  and m.get("params_m", 0) > cur_m.get("params_m", 1e9)]  # fmt: skip
        # a bigger model costs time per example about in proportion to its size
        if s.max_latency_ms and ms:
            bigger = [m for m in bigger if ms * m["params_m"] / cur_m.get("params_m", 1) <= s.max_latency_ms]
        if bigger:
            pick = min(bigger, key=lambda m: m["params_m"])
            return Decision("switch_model", f"underfit: {cur.get('student')} scores only {fit:.2f} on its own training "
                            f"rows; {pick['id']} is bigger ({pick['params_m']:.0f}M parameters)", "rule",
                            {"name": pick["id"], "why": "underfit"})  # fmt: skip
    if not (s.max_latency_ms and ms and ms > s.max_latency_ms):
        return None
    smaller = [m for m in s.models if m.get("fits") and not m.get("tried")
               and m.get("params_m", 1e9) < cur_m.get("params_m", 1e9)]  # fmt: skip
    if not smaller:
        return None
    pick = min(smaller, key=lambda m: m.get("params_m", 1e9))
    return Decision("switch_model", f"latency: {cur.get('student')} takes {ms:.1f} ms/example, over the "
                    f"{s.max_latency_ms:g} ms bound; {pick['id']} is smaller ({pick['params_m']:.0f}M parameters)",
                    "rule", {"name": pick["id"], "why": "latency"})  # fmt: skip


def rule_decide(s: Summary) -> Decision:
    """The rule policy: stop on target, budget or plateau; meet the latency bound; fix the weakest labels."""
    reached = s.reached()
    if reached:
        return Decision("stop", f"target {s.target} reached ({reached})", "rule")
    if s.budget.spent():
        return Decision("stop", "budget spent", "rule")
    switch = _switch(s)
    if switch is not None and not guard(switch, s):
        return switch
    judged = [a for a in s.actions if a.get("gain") is not None]
    if len(judged) >= 2 and not any(a.get("significant") and a["gain"] > 0 for a in judged[-2:]):
        return Decision("stop", "plateau: the last two rounds changed the score by "
                        f"{judged[-2]['gain']:+.3f} and {judged[-1]['gain']:+.3f} ({judged[-1].get('by', 'teacher')}"
                        " rows), within the noise", "rule")  # fmt: skip
    n = _round_size(s)
    if n < _min_round(s):
        return Decision("stop", f"the budget left buys only {n} examples, less than a useful round "
                        f"({_min_round(s)})", "rule")  # fmt: skip
    if s.seconds_per_round and s.seconds_per_round > s.budget.seconds_left():
        return Decision("stop", "not enough time left for another round", "rule")
    tried = {a["action"] for a in s.actions}
    if s.retrieval_possible and "retrieve" not in tried:
        return Decision("retrieve", "labelled data that fits may exist in the index; try it first", "rule",
                        {"query": ""})  # fmt: skip
    if not s.per_label:  # generation, QA: more of the same checked data
        d = Decision("generate_more", f"more checked examples ({n})", "rule", {"n": n})
        why = guard(d, s)
        return Decision("stop", f"no useful action left ({why})", "rule") if why else d
    weak = sorted((v, k) for k, v in s.per_label.items() if v < 0.999)
    if (
        not weak
    ):  # saturated: the teacher's rows no longer measure anything; only the budget or a plateau stops
        t = s.current().get("teacher") or {}
        span = f" ({t['rows']} rows: 90% interval {t['low']:.2f}-1.00)" if t.get("rows") else ""
        d = Decision("generate_more", f"every label is perfect on the teacher-written validation rows{span}: "
                     "they are too easy to measure the student; more data for every label", "rule",
                     {"labels": list(s.per_label), "n": n, "style": "more"})  # fmt: skip
        why = guard(d, s)
        return Decision("stop", f"every label is perfect on validation, and {why}", "rule") if why else d
    labels = [k for _, k in weak[: max(1, len(s.per_label) // 2)]]
    pairs = [(t, p) for t, p, _ in s.confusions if t in labels or p in labels][:3]
    reason = f"weakest labels {', '.join(f'{k} ({v:.2f})' for v, k in weak[:3])}"
    if pairs:
        reason += f"; most confused: {', '.join(f'{t}→{p}' for t, p in pairs)}"
    args: dict[str, Any] = {"labels": labels, "n": n, "style": "confusable" if pairs else "more"}
    if pairs:
        args["pairs"] = [list(p) for p in pairs]
    d = Decision("generate_more", reason, "rule", args)
    if guard(d, s):  # the same round did not help last time: more of everything, or stop
        d = Decision("generate_more", "the weak labels did not improve last time; more data for all labels",
                     "rule", {"labels": list(s.per_label), "n": n, "style": "more"})  # fmt: skip
        why = guard(d, s)
        if why:
            return Decision("stop", f"no useful action left ({why})", "rule")
    return d
