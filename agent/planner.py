"""The planner: the only way a run proceeds. A LangGraph loop over one `Run`, for every task kind.

    START ─(from the store)─► prepare ─► train ─► decide ─┬─► act ─► train …
                                                          └─► deploy ─► END

`prepare` parses, retrieves and generates the first round; `train` fits the round's students on
everything kept so far (an experiment each, scored on teacher-written and real rows); `decide`
builds a compact summary (agent/policy.py) and asks the LLM — when it is a capable endpoint — for
one legal action by structured output, which the guard checks; a rejected or missing answer is
replaced by the rule policy, and every decision is stored with `by: llm|rule`. `act` carries it out
(generate_more for the weakest or most confused labels, retrieve, switch_model). `deploy`
keeps the best round by the same rule that picks within a round (agent/scoring.py).

`--max-rounds 1` is the fixed recipe: one round, no decisions. The run store is the one source of
truth for resuming: every node records its work there before the next starts, and a resumed run
enters the graph where the store says it stopped (`resume_point`), so nothing is redone or re-paid.
Validation data is fixed after the first round: examples generated later only ever go to training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from typing import Any, Literal

from p2m import faults
from p2m.agent.options import RunOptions, RunResult, open_run, open_store, recorded
from p2m.agent.policy import ACTIONS, Budget, Summary, guard, rule_decide
from p2m.agent.run import Run
from p2m.agent.scoring import later_round
from p2m.agent.state import PlannerState
from p2m.errors import ConfigError
from p2m.memory import RunStore
from p2m.tools.prompts import load_prompt
from p2m.tools.types import Decision, TaskSpec

__all__ = ["PlanOptions", "Planner", "build_graph", "run_planner", "resume_point"]


@dataclasses.dataclass
class PlanOptions:
    """When to stop and who decides."""

    target: float | None = None
    budget_minutes: float = 0.0
    budget_llm_calls: int = 0
    max_rounds: int = 3
    decider: str = "auto"  # auto (the LLM when it is a capable endpoint, else rules) | llm | rule

    def __post_init__(self) -> None:
        if self.target is not None and not 0 < self.target <= 1:
            raise ConfigError(f"--target must be in (0, 1], not {self.target}")
        for name, value, least in (("--budget-minutes", self.budget_minutes, 0),
                                   ("--budget-llm-calls", self.budget_llm_calls, 0), ("--max-rounds", self.max_rounds, 1)):  # fmt: skip
            if value < least:
                raise ConfigError(f"{name} must be ≥ {least}, not {value}")
        if self.decider not in ("auto", "llm", "rule"):
            raise ConfigError(f"decider must be auto, llm or rule, not {self.decider!r}")


_DECISION_SCHEMA = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": list(ACTIONS)},
        "labels": {"type": "array", "items": {"type": "string"}},
        "n": {"type": "integer"},
        "style": {"type": "string", "enum": ["more", "confusable"]},
        "query": {"type": "string"},
        "name": {"type": "string"},
        "reason": {"type": "string"},
    },
    "required": ["action", "reason"],
}
_ARGS = {"generate_more": ("labels", "n", "style"), "retrieve": ("query",), "switch_model": ("name",),
         "stop": ()}  # fmt: skip


def _round_decision(store: RunStore, run_id: str, k: int) -> dict[str, Any] | None:
    """The decision taken after round `k - 1` (it says what round `k` is), if any."""
    found = [d for d in store.decisions(run_id)
             if (d.get("args") or {}).get("round") == k and not d["action"].startswith("rejected")]  # fmt: skip
    return found[-1] if found else None


def resume_point(store: RunStore, run_id: str) -> dict[str, Any]:
    """Where the graph starts, read from the run store: {"entry": node, "round": k, "pending": decision}."""
    stages = store.stages(run_id)
    rounds = [int(s.split(":")[1]) for s in stages if s.startswith("train:") and s.split(":")[1].isdigit()]
    if not rounds:
        return {"entry": "prepare", "round": 0}
    k = max(rounds)
    d = _round_decision(store, run_id, k + 1)
    if d is None:
        return {"entry": "decide", "round": k}
    if d["action"] == "stop":
        return {"entry": "deploy", "round": k, "pending": d}
    if f"act:{k + 1}" in stages:
        return {"entry": "train", "round": k + 1}
    return {"entry": "act", "round": k, "pending": d}


class Planner:
    """The graph's nodes, sharing one Run (store, folder, teacher). Node state lives in the run store."""

    def __init__(self, r: Run, plan: PlanOptions) -> None:
        self.r, self.plan = r, plan

    def budget(self) -> Budget:
        led = self.r.store.ledger(self.r.run_id)
        return Budget(
            self.plan.budget_minutes, self.plan.budget_llm_calls, self.elapsed(), led["calls"] - led["cached"]
        )

    def elapsed(self) -> float:
        """Seconds of work recorded so far (time while the process was dead is not counted)."""
        return sum(float(i.get("seconds") or 0.0) for i in self.r.store.stages(self.r.run_id).values())

    def students(self, k: int) -> list[str]:
        """The students round `k` trains: the first round's, or what the last switch chose."""
        for i in range(k, 0, -1):
            act = self.r.store.stage_info(self.r.run_id, f"act:{i}") or {}
            if act.get("students"):
                return act["students"]
        return self.r.first_students()

    def rounds(self) -> list[dict[str, Any]]:
        stages = self.r.store.stages(self.r.run_id)
        return [stages[f"train:{k}"] for k in range(len(stages)) if f"train:{k}" in stages]

    # nodes ---------------------------------------------------------------------------------------
    def prepare(self, state: PlannerState) -> dict[str, Any]:
        r = self.r
        r.parse()
        r.eval_rows()  # a bad --eval file fails before the teacher is paid
        if self.plan.budget_llm_calls and self.plan.max_rounds > 1:  # the first round spends half the budget
            half = max(1, self.plan.budget_llm_calls // 2)
            r.opts.gen = dataclasses.replace(r.opts.gen, max_calls=min(r.opts.gen.max_calls or half, half))
        elif self.plan.budget_llm_calls:
            r.opts.gen = dataclasses.replace(r.opts.gen, max_calls=self.plan.budget_llm_calls)
        r.retrieve()
        r.generate(0)
        r.curate(0)
        return {"round": 0}

    def train(self, state: PlannerState) -> dict[str, Any]:
        k = state.get("round", 0)
        done = self.r.train(k, self.students(k))
        self.r.log(f"round {k}: {done['n_train']} training rows; kept {done['why']}")
        return {"round": k}

    def decide(self, state: PlannerState) -> dict[str, Any]:
        k = state.get("round", 0)
        found = _round_decision(self.r.store, self.r.run_id, k + 1)
        if found is not None:  # decided before a kill
            return {"pending": found}
        summary = self.summary(k)
        d = None
        if k + 1 >= self.plan.max_rounds:
            d = Decision("stop", f"reached the round limit ({self.plan.max_rounds})", "rule")
        elif self._use_llm():
            d = self._ask_llm(summary)
        if d is not None and d.by == "llm":
            why = guard(d, summary)
            if why:
                self.r.store.add_decision(self.r.run_id, {**d.to_dict(), "action": f"rejected:{d.action}",
                                                          "reason": f"guard: {why} (LLM said: {d.reason})"})  # fmt: skip
                d = None
        if d is None:
            d = rule_decide(summary)
        d.args = {**d.args, "round": k + 1}
        self.r.store.add_decision(self.r.run_id, d.to_dict())
        if self.plan.max_rounds > 1:
            self.r.log(f"decision ({d.by}): {d.action} — {d.reason}")
        return {"pending": d.to_dict()}

    def _use_llm(self) -> bool:
        if self.plan.decider != "auto":
            return self.plan.decider == "llm"
        return bool(getattr(self.r.llm, "capable", False))

    def _ask_llm(self, summary: Summary) -> Decision | None:
        messages = [("system", load_prompt("decide_system")), ("user", json.dumps(summary.to_prompt()))]
        try:
            data = self.r.llm.json(messages, _DECISION_SCHEMA, max_tokens=200, purpose="decide")
        except Exception as e:  # an LLM that fails to answer leaves the decision to the rules
            self.r.store.add_decision(
                self.r.run_id, Decision("rejected:llm", f"no answer: {e}"[:300], "llm").to_dict()
            )
            return None
        if not isinstance(data, dict) or data.get("action") not in ACTIONS:
            self.r.store.add_decision(
                self.r.run_id,
                Decision("rejected:llm", f"not a legal action: {data!r}"[:300], "llm").to_dict(),
            )
            return None
        args = {k: data[k] for k in _ARGS[data["action"]] if data.get(k) not in (None, "", [])}
        return Decision(data["action"], str(data.get("reason") or "")[:300], "llm", args)

    def summary(self, k: int) -> Summary:
        """The compact state the decider reads (agent/policy.py)."""
        from p2m.agent.summary import build_summary

        return build_summary(self, k)

    def act(self, state: PlannerState) -> dict[str, Any]:
        d = state["pending"]
        k = d["args"]["round"]
        r = self.r

        def work() -> dict[str, Any]:
            # the stages it runs (generate:k, curate:k, retrieve) count their own seconds toward the budget
            info: dict[str, Any] = {"action": d["action"], "seconds": 0.0}
            if d["action"] == "generate_more":
                focus = {key: d["args"][key] for key in ("labels", "pairs", "style") if key in d["args"]}
                r.generate(k, focus, n=d["args"].get("n"))
                r.curate(k)
            elif d["action"] == "retrieve":
                r.store.clear_stages(r.run_id, ["retrieve"])
                r.retrieve()
            elif d["action"] == "switch_model":
                info["students"] = [d["args"]["name"]]
            return info

        r.stage(f"act:{k}", work)
        return {"round": k, "pending": None}

    def deploy(self, state: PlannerState) -> dict[str, Any]:
        rounds = self.rounds()
        best, why = rounds[0]["best"], ""
        for rnd in rounds[1:]:
            best, why = later_round(best, rnd["best"])
        cands = [c for rnd in rounds for c in rnd["candidates"]]
        if len(rounds) > 1:
            self.r.decide("select", f"{best['name']} is kept of {len(rounds)} rounds: {why} (a later round wins "
                          "unless an earlier one is ahead beyond the noise)", name=best["name"])  # fmt: skip
        stopped = _round_decision(self.r.store, self.r.run_id, len(rounds))
        planner = {"rounds": len(rounds), "target": self.plan.target, "max_rounds": self.plan.max_rounds,
                   "stopped": stopped["reason"] if stopped else None,
                   "scores": [rnd["best"]["score"] for rnd in rounds],
                   "real_scores": [(rnd["best"].get("real") or {}).get("score") for rnd in rounds]}  # fmt: skip
        self.r.deploy(best, cands, {"planner": planner})
        from p2m.agent.report import write_plot

        write_plot(self.r.store, self.r.run_id, self.r.folder / "trajectory.png")
        return {}


def _at_point(name: str, node: Any) -> Any:
    """The node, entered through the fault point `node:<name>` (p2m/faults.py; nothing outside tests)."""

    def entered(state: PlannerState) -> dict[str, Any]:
        faults.point(f"node:{name}")
        return node(state)

    return entered


def _entry(state: PlannerState) -> Literal["prepare", "train", "decide", "act", "deploy"]:
    return state.get("entry") or "prepare"  # type: ignore[return-value]


def route(state: PlannerState) -> Literal["act", "deploy"]:
    """After a decision: carry it out, or deploy when it is stop."""
    pending = state.get("pending") or {}
    return "deploy" if pending.get("action", "stop") == "stop" else "act"


def build_graph(planner: Planner) -> Any:
    """The planner graph, compiled; it starts at the node `state["entry"]` names (see `resume_point`)."""
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(PlannerState)
    for name in ("prepare", "train", "decide", "act", "deploy"):
        g.add_node(name, _at_point(name, getattr(planner, name)))
    g.add_conditional_edges(START, _entry, ["prepare", "train", "decide", "act", "deploy"])
    g.add_edge("prepare", "train")
    g.add_edge("train", "decide")
    g.add_conditional_edges("decide", route, {"act": "act", "deploy": "deploy"})
    g.add_edge("act", "train")
    g.add_edge("deploy", END)
    return g.compile()


def run_planner(prompt: str | None = None, options: RunOptions | None = None, plan: PlanOptions | None = None, *,
                resume: str | None = None, progress: bool = True, llm: Any = None, store: RunStore | None = None
                ) -> RunResult:  # fmt: skip
    """Run (or resume) a task until the target, the budget, a plateau or the round limit; deploy the best student.

    Args:
        prompt: the task description (ignored when resuming).
        options: settings; when resuming, the stored ones are used.
        plan: when to stop and who decides (default: PlanOptions()).
        resume: a run id to continue.
        progress: print progress bars and stage lines.
        llm: an LLM client to use instead of starting one (tests).
        store: the run store (default: the one under the p2m home).

    Raises:
        P2MError: a readable failure; the run is marked failed (or interrupted on Ctrl-C) and can be resumed.
    """
    store = store or open_store()
    plan = plan or PlanOptions()
    run_id, folder, prompt, options, config = open_run(store, prompt, options, resume,
                                                       {"plan": dataclasses.asdict(plan)})  # fmt: skip
    if resume and config.get("plan"):
        plan = PlanOptions(**config["plan"])
    elif resume:  # a run recorded before the planner was the engine: one round, as it was started
        plan = PlanOptions(max_rounds=1)
    r = Run(store, run_id, folder, prompt, options, progress, llm)
    planner = Planner(r, plan)
    rounds = (
        "one round" if plan.max_rounds == 1 else f"up to {plan.max_rounds} rounds, decider {plan.decider}"
    )
    target = f", target {plan.target}" if plan.target else ""
    r.log(f"run {run_id} → {folder} ({rounds}{target})")
    t0 = time.perf_counter()
    with recorded(store, run_id), contextlib.closing(r):
        start = resume_point(store, run_id)
        build_graph(planner).invoke(start, {"recursion_limit": 8 * plan.max_rounds + 10})
    r.log(f"done in {time.perf_counter() - t0:.0f} s")
    report = json.loads((folder / "report.json").read_text())
    return RunResult(run_id, folder, TaskSpec.from_dict(report["task"]), report)
