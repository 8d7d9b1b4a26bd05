"""What the planner may do next: the legal actions, a rule policy, and the guard every LLM decision passes.

The decider sees a compact summary of the run (metric history, per-label scores, confusions, data per
label and source, models tried, budget left), never raw logs. An LLM's decision is checked by
`guard` against that summary — an illegal or wasteful decision (over budget, a label already perfect,
a model that does not fit, repeating what did not help) is rejected with the reason, and
`rule_decide` decides instead. Both are pure functions of the summary, so they are tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from p2m.tools.types import Decision

__all__ = ["ACTIONS", "Budget", "rule_decide", "guard", "summarize", "PLATEAU"]

ACTIONS = ("generate_more", "retrieve", "switch_model", "tune", "stop")
PLATEAU = 0.005  # an improvement smaller than this does not count as progress
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
    """The compact run state a decider reads."""

    target: float | None
    scores: list[float]  # validation metric per experiment, in order
    per_label: dict[str, float]  # F1 per label of the best experiment
    confusions: list[tuple[str, str, int]]  # (true, predicted, count), largest first
    examples: dict[str, dict[str, int]]  # label → source kind → count
    actions: list[dict[str, Any]]  # earlier decisions with the score change after each
    budget: Budget
    calls_per_example: float  # teacher calls one kept example has cost so far
    seconds_per_round: float  # wall time of one generate+train round so far
    retrieval_possible: bool
    models: list[dict[str, Any]] = field(default_factory=list)  # candidates: {id, fits, tried}

    def best(self) -> float:
        return max(self.scores, default=0.0)

    def to_prompt(self) -> dict[str, Any]:
        """What the LLM decider is shown."""
        return {
            "target": self.target,
            "validation_scores": [round(s, 4) for s in self.scores],
            "per_label_f1": {k: round(v, 3) for k, v in self.per_label.items()},
            "top_confusions": [f"{t} → {p}: {n}" for t, p, n in self.confusions[:5]],
            "examples_per_label": self.examples,
            "previous_actions": [
                {"action": a["action"], "args": a.get("args", {}), "gain": a.get("gain")}
                for a in self.actions[-6:]
            ],
            "llm_calls_left": None if self.budget.calls_left() == float("inf") else self.budget.calls_left(),
            "seconds_left": None
            if self.budget.seconds_left() == float("inf")
            else round(self.budget.seconds_left()),
            "retrieval_possible": self.retrieval_possible,
            "models": self.models,
        }


def summarize(**kw: Any) -> Summary:
    """Build a Summary (a thin constructor kept for symmetry with the planner's state)."""
    return Summary(**kw)


def _round_size(s: Summary) -> int:
    """Examples one more round can afford, from the calls and time each example has cost so far."""
    per_label = max(1, len(s.per_label))
    n = 50 * per_label
    if s.calls_per_example > 0 and s.budget.calls_left() != float("inf"):
        n = min(n, int(s.budget.calls_left() / s.calls_per_example))
    return n


def guard(d: Decision, s: Summary) -> str | None:
    """Why a decision is illegal or wasteful here, or None when it may run."""
    if d.action not in ACTIONS:
        return f"unknown action {d.action!r}; legal: {', '.join(ACTIONS)}"
    if d.action == "stop":
        return None
    if s.budget.spent():
        return "the budget is spent; only stop is possible"
    if s.target is not None and s.best() >= s.target:
        return f"the target {s.target} is reached ({s.best():.3f}); stop"
    last_same = [a for a in s.actions if a["action"] == d.action and a.get("args") == d.args]
    if last_same and last_same[-1].get("gain") is not None and last_same[-1]["gain"] < PLATEAU:
        return f"{d.action} with the same arguments already ran and did not help (gain {last_same[-1]['gain']:+.3f})"
    if d.action == "generate_more":
        labels = d.args.get("labels") or list(s.per_label)
        unknown = [lab for lab in labels if lab not in s.per_label]
        if unknown:
            return f"unknown labels {unknown}"
        perfect = [lab for lab in labels if s.per_label.get(lab, 0) >= 0.999]
        if perfect and len(perfect) == len(labels):
            return f"labels {perfect} are already perfect on validation"
        n = int(d.args.get("n") or 0)
        if n <= 0:
            return "generate_more needs n > 0"
        if s.calls_per_example and n * s.calls_per_example > s.budget.calls_left():
            return f"{n} examples cost about {n * s.calls_per_example:.0f} calls; {s.budget.calls_left():.0f} left"
        if s.seconds_per_round and s.seconds_per_round > s.budget.seconds_left():
            return "a round takes longer than the time left"
    if d.action == "retrieve" and not s.retrieval_possible:
        return "nothing loadable to retrieve (empty index, or retrieval already used everything)"
    if d.action == "switch_model":
        name = d.args.get("name")
        model = next((m for m in s.models if m["id"] == name), None)
        if model is None:
            return f"unknown model {name!r}"
        if not model.get("fits", False):
            return f"{name} does not fit this machine's memory or speed budget"
        if model.get("tried"):
            return f"{name} was already tried"
    if d.action == "tune":
        params = d.args or {}
        bad = [k for k in params if k not in ("epochs", "lr")]
        if bad or not params:
            return f"tune takes epochs and/or lr, not {bad or 'nothing'}"
        if "epochs" in params and not 1 <= int(params["epochs"]) <= 20:
            return "epochs must be between 1 and 20"
        if "lr" in params and not 1e-6 <= float(params["lr"]) <= 1e-3:
            return "lr must be between 1e-6 and 1e-3"
    return None


def rule_decide(s: Summary) -> Decision:
    """The rule policy: stop on target, budget or plateau; otherwise fix the weakest labels."""
    best = s.best()
    if s.target is not None and best >= s.target:
        return Decision("stop", f"target {s.target} reached ({best:.3f})", "rule")
    if s.budget.spent():
        return Decision("stop", "budget spent", "rule")
    gains = [a.get("gain") for a in s.actions if a.get("gain") is not None]
    if len(gains) >= 2 and all(g < PLATEAU for g in gains[-2:]):
        return Decision("stop", f"plateau: the last two rounds changed the score by {gains[-2]:+.3f}, "
                                f"{gains[-1]:+.3f}", "rule")  # fmt: skip
    n = _round_size(s)
    if n < _MIN_ROUND:
        return Decision("stop", f"the budget left buys only {n} examples, less than a useful round", "rule")
    if s.seconds_per_round and s.seconds_per_round > s.budget.seconds_left():
        return Decision("stop", "not enough time left for another round", "rule")
    tried = {a["action"] for a in s.actions}
    if s.retrieval_possible and "retrieve" not in tried:
        return Decision("retrieve", "labelled data that fits may exist in the index; try it first", "rule",
                        {"query": ""})  # fmt: skip
    weak = sorted((v, k) for k, v in s.per_label.items() if v < 0.999)
    if not weak:
        return Decision("stop", "every label is perfect on validation", "rule")
    labels = [k for _, k in weak[: max(1, len(s.per_label) // 2)]]
    pairs = [(t, p) for t, p, _ in s.confusions if t in labels or p in labels][:3]
    style = "confusable" if pairs else "more"
    reason = f"weakest labels {', '.join(f'{k} ({v:.2f})' for v, k in weak[:3])}"
    if pairs:
        reason += f"; most confused: {', '.join(f'{t}→{p}' for t, p in pairs)}"
    args: dict[str, Any] = {"labels": labels, "n": n, "style": style}
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
