"""The planner: a LangGraph loop that trains, reads the evaluation, decides what to do next, and stops.

    prepare ─► train ─► decide ─┬─► act ─► train …
                                └─► deploy ─► END

`prepare` parses, retrieves and generates the first round (the pipeline's stages); `train` fits the
students on everything kept so far and records an experiment per candidate; `decide` builds a compact
summary (agent/policy.py) and asks the LLM — when it is a capable endpoint — for one legal action by
structured output, which the guard checks; a rejected or missing answer is replaced by the rule
policy, and every decision is stored with `by: llm|rule`. `act` carries it out (generate_more for
the weakest or most confused labels, retrieve, tune, switch_model). The graph is checkpointed with
LangGraph's SQLite saver (thread = run id) and every node's work is recorded in the run store first,
so a run killed at any point resumes where it stopped without redoing or re-paying anything.

Validation data is fixed after the first round: examples generated later only ever go to training,
so scores of different rounds are comparable; a user's `--eval` file is only reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from p2m.agent.pipeline import RunOptions, RunResult, _log, _Run, open_run, open_store, recorded
from p2m.agent.policy import ACTIONS, Budget, guard, rule_decide, summarize
from p2m.agent.state import PlannerState
from p2m.errors import ConfigError
from p2m.memory import RunStore, home_dir
from p2m.tools.evaluate import load_jsonl_pairs
from p2m.tools.generate import curate, generate_examples
from p2m.tools.prompts import load_prompt
from p2m.tools.train import finetune, label_prototypes, train_quick
from p2m.tools.types import Decision, TaskSpec

__all__ = ["PlanOptions", "build_graph", "run_planner"]


@dataclasses.dataclass
class PlanOptions:
    """When to stop and who decides."""

    target: float | None = None
    budget_minutes: float = 0.0
    budget_llm_calls: int = 0
    max_rounds: int = 6
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
        "epochs": {"type": "integer"},
        "lr": {"type": "number"},
        "reason": {"type": "string"},
    },
    "required": ["action", "reason"],
}
_ARGS = {"generate_more": ("labels", "n", "style"), "retrieve": ("query",), "switch_model": ("name",),
         "tune": ("epochs", "lr"), "stop": ()}  # fmt: skip


class _Planner:
    """The graph's nodes, sharing one pipeline run (store, folder, teacher)."""

    def __init__(self, r: _Run, plan: PlanOptions, eval_pairs: list | None) -> None:
        self.r, self.plan, self.eval_pairs = r, plan, eval_pairs
        self.spec: TaskSpec | None = None

    # helpers -------------------------------------------------------------------------------------
    def _spec(self) -> TaskSpec:
        if self.spec is None:
            self.spec = self.r.parse()
        return self.spec

    def _budget(self, state: PlannerState) -> Budget:
        led = self.r.store.ledger(self.r.run_id)
        return Budget(self.plan.budget_minutes, self.plan.budget_llm_calls, state.get("elapsed", 0.0),
                      led["calls"] - led["cached"])  # fmt: skip

    def _timed(self, state: PlannerState, t0: float) -> float:
        return state.get("elapsed", 0.0) + time.perf_counter() - t0

    # nodes ---------------------------------------------------------------------------------------
    def prepare(self, state: PlannerState) -> dict[str, Any]:
        t0 = time.perf_counter()
        spec = self._spec()
        if self.plan.budget_llm_calls:  # the first round spends half the budget; the planner aims the rest
            half = max(1, self.plan.budget_llm_calls // 2)
            cap = min(self.r.opts.gen.max_calls or half, half)
            self.r.opts.gen = dataclasses.replace(self.r.opts.gen, max_calls=cap)
        self.r.retrieve(spec, self.eval_pairs)
        self.r.generate(spec)
        self.r.curate(spec)
        return {"round": 0, "elapsed": self._timed(state, t0), "train_params": {}}

    def train(self, state: PlannerState) -> dict[str, Any]:
        t0 = time.perf_counter()
        k = state.get("round", 0)
        key = f"train:{k}"
        done = self.r.store.stage_info(self.r.run_id, key)
        if done is None:
            done = self._train_round(k, state.get("train_params") or {})
            self.r.store.stage_done(self.r.run_id, key, done)
        return {"scores": [done["best"]["score"]], "elapsed": self._timed(state, t0)}

    def _train_round(self, k: int, params: dict[str, Any]) -> dict[str, Any]:
        spec, r = self._spec(), self.r
        r.store.set_stage(r.run_id, f"train:{k}")
        r.store.delete_experiments(r.run_id, f"r{k}-")  # a round killed mid-training starts over
        train, val = r.data(spec)
        results = []
        t0 = time.perf_counter()
        quick, report, qparams = train_quick(
            train, val, spec.labels, prior=label_prototypes(spec.labels, spec.input_kind)
        )
        results.append(
            r._record(f"r{k}-quick-trial", quick, report, qparams, len(train), time.perf_counter() - t0)
        )
        if r.opts.finetune:
            cfg = dataclasses.replace(r.opts.train, **params) if params else r.opts.train
            t0 = time.perf_counter()
            student, report, fparams = finetune(train, val, spec.labels, cfg, progress=r.progress,
                                                soft=quick.probabilities([x for x, _ in train]))  # fmt: skip
            results.append(
                r._record(f"r{k}-finetune", student, report, fparams, len(train), time.perf_counter() - t0)
            )
        best = max(results, key=lambda c: (c["score"], c["macro_f1"], c["name"].endswith("finetune")))
        _log(
            r.progress,
            f"round {k}: {len(train)} training examples, validation {best['score']:.3f} ({best['name']})",
        )
        return {"best": best, "candidates": results, "n_train": len(train)}

    def decide(self, state: PlannerState) -> dict[str, Any]:
        t0 = time.perf_counter()
        summary = self._summary(state)
        d = None
        k = state.get("round", 0)
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
        _log(self.r.progress, f"decision ({d.by}): {d.action} — {d.reason}")
        return {"pending": d.to_dict(), "elapsed": self._timed(state, t0),
                "stopped": d.reason if d.action == "stop" else None}  # fmt: skip

    def _use_llm(self) -> bool:
        if self.plan.decider == "rule":
            return False
        if self.plan.decider == "llm":
            return True
        return bool(getattr(self.r.llm, "capable", False))

    def _ask_llm(self, summary: Any) -> Decision | None:
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

    def _summary(self, state: PlannerState) -> Any:
        spec, r = self._spec(), self.r
        k = state.get("round", 0)
        best_info = r.store.stage_info(r.run_id, f"train:{k}") or {}
        best = best_info.get("best", {}).get("report", {})
        labels = best.get("labels") or spec.labels
        per_label = {lab: float(v.get("f1", 0.0)) for lab, v in (best.get("per_label") or {}).items()}
        conf = best.get("confusion") or []
        confusions = sorted(((labels[i], labels[j], int(n)) for i, row in enumerate(conf) for j, n in enumerate(row)
                             if i != j and n), key=lambda t: -t[2])  # fmt: skip
        rows = r.store.examples(r.run_id, kept=True)
        per: dict[str, Counter] = {lab: Counter() for lab in spec.labels}
        for row in rows:
            per.setdefault(row["output"], Counter())[row["source"].split(":")[0]] += 1
        scores = list(state.get("scores", []))
        actions = []
        for dec in r.store.decisions(r.run_id):
            rnd = (dec.get("args") or {}).get("round")
            if rnd is None or dec["action"].startswith("rejected") or dec["action"] == "stop":
                continue
            gain = scores[rnd] - scores[rnd - 1] if 0 < rnd < len(scores) else None
            actions.append({"action": dec["action"], "args": {a: v for a, v in dec["args"].items() if a != "round"},
                            "gain": gain})  # fmt: skip
        gen = [x for x in rows if x["source"].startswith("generated:")]
        led = r.store.ledger(r.run_id)
        calls_per = (led["calls"] - led["cached"]) / max(1, len(gen))
        rounds = max(1, k + 1)
        index_rows = (r.store.stage_info(r.run_id, "retrieve") or {}).get("rows", 0)
        return summarize(
            target=self.plan.target, scores=scores, per_label=per_label, confusions=confusions,
            examples={lab: dict(c) for lab, c in per.items()}, actions=actions, budget=self._budget(state),
            calls_per_example=calls_per, seconds_per_round=state.get("elapsed", 0.0) / rounds,
            retrieval_possible=bool(r.opts.retrieve) and index_rows == 0 and _index_has_data(r),
            models=[{"id": "sentence-transformers/all-MiniLM-L6-v2", "fits": True, "tried": True}],
        )  # fmt: skip

    def act(self, state: PlannerState) -> dict[str, Any]:
        t0 = time.perf_counter()
        d = state["pending"]
        k = d["args"]["round"]
        update: dict[str, Any] = {"round": k, "pending": None}
        if d["action"] == "generate_more":
            self._generate_round(k, d["args"])
        elif d["action"] == "retrieve":
            self.r.store.clear_stages(self.r.run_id, ["retrieve"])
            self.r.retrieve(self._spec(), self.eval_pairs)
        elif d["action"] == "tune":
            update["train_params"] = {p: d["args"][p] for p in ("epochs", "lr") if p in d["args"]}
        update["elapsed"] = self._timed(state, t0)
        return update

    def _generate_round(self, k: int, args: dict[str, Any]) -> None:
        spec, r = self._spec(), self.r
        key = f"generate:{k}"
        if r.store.stage_info(r.run_id, key) is None:
            r.store.set_stage(r.run_id, key)
            labels = [lab for lab in args.get("labels") or spec.labels if lab in spec.labels] or spec.labels
            sub = dataclasses.replace(spec, labels=labels)
            mine = [x for x in r.store.examples(r.run_id, kept=True, source_prefix="generated:")
                    if x["quality"].get("round") == k]  # fmt: skip
            counts = {lab: sum(x["output"] == lab for x in mine) for lab in labels}
            cfg = dataclasses.replace(r.opts.gen, examples=max(2, int(args.get("n") or 50)), minutes=0)

            def store_rows(rows: list[dict[str, Any]]) -> None:
                r.store.add_examples(r.run_id, [{**row, "quality": {"round": k}} for row in rows])

            hints = {}
            if args.get("style") == "confusable":  # write examples that separate the confused labels
                for true, pred in args.get("pairs") or []:
                    for a, b in ((true, pred), (pred, true)):
                        if a in labels and a not in hints:
                            hints[a] = f" It must be clearly {a}, not {b}."
            stats = generate_examples(sub, r.llm, cfg, start_index=r.store.max_request_index(r.run_id) + 1,
                                      counts=counts, on_rows=store_rows, run_id=r.run_id, extra_hints=hints)  # fmt: skip
            r.store.stage_done(r.run_id, key, stats)
        if r.store.stage_info(r.run_id, f"curate:{k}") is None:
            rows = r.store.examples(r.run_id, kept=None, source_prefix="generated:")
            # targeted rounds add to some labels on purpose: a looser balance cap keeps what they added
            updates, report = curate(rows, spec, seed=r.opts.train.seed, balance=3.0)
            later = {x["id"] for x in rows if (x["quality"] or {}).get("round", 0) > 0}
            for u in updates:  # validation stays what it was after the first round
                if u["id"] in later and u.get("split") == "validation":
                    u["split"] = "train"
                if u["id"] in later:
                    u["quality"] = {
                        **(u.get("quality") or {}),
                        "round": next(x["quality"]["round"] for x in rows if x["id"] == u["id"]),
                    }
            r.store.update_examples(updates)
            r.store.stage_done(r.run_id, f"curate:{k}", report)

    def deploy(self, state: PlannerState) -> dict[str, Any]:
        r, spec = self.r, self._spec()
        rounds = [r.store.stage_info(r.run_id, f"train:{i}") for i in range(state.get("round", 0) + 1)]
        cands = [c for info in rounds if info for c in info["candidates"]]
        best = max(cands, key=lambda c: (c["score"], c["macro_f1"]))
        n = state.get("round", 0)
        gens = [
            r.store.stage_info(r.run_id, key)
            for key in ["generate", *(f"generate:{k}" for k in range(1, n + 1))]
        ]
        gen = _sum_generation([g for g in gens if g])
        curs = [
            r.store.stage_info(r.run_id, key) for key in ["curate", *(f"curate:{k}" for k in range(1, n + 1))]
        ]
        cur = next((c for c in reversed(curs) if c), {})  # the last curation saw every generated row
        retrieved = r.store.stage_info(r.run_id, "retrieve")
        report = r.deploy(spec, gen, cur, {"best": best, "candidates": cands}, self.eval_pairs, retrieved)
        report["planner"] = {"scores": state.get("scores", []), "stopped": state.get("stopped"),
                             "rounds": state.get("round", 0) + 1, "target": self.plan.target}  # fmt: skip
        (r.folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
        write_plot(r.store, r.run_id, r.folder / "trajectory.png")
        return {}


def _sum_generation(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The generation stats of every round together (the report counts all rounds, not the first)."""
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


def _index_has_data(r: _Run) -> bool:
    try:
        from p2m.memory.vectors import open_index

        index = open_index(r.opts.chroma_url)
        return any(index.count(k) for k in ("datasets", "local"))
    except ConfigError:
        return False


def route(state: PlannerState) -> Literal["act", "deploy"]:
    """After a decision: carry it out, or deploy when it is stop."""
    pending = state.get("pending") or {}
    return "deploy" if pending.get("action", "stop") == "stop" else "act"


def build_graph(planner: _Planner, checkpointer: Any = None) -> Any:
    """The planner graph, compiled (with a checkpointer when given)."""
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(PlannerState)
    g.add_node("prepare", planner.prepare)
    g.add_node("train", planner.train)
    g.add_node("decide", planner.decide)
    g.add_node("act", planner.act)
    g.add_node("deploy", planner.deploy)
    g.add_edge(START, "prepare")
    g.add_edge("prepare", "train")
    g.add_edge("train", "decide")
    g.add_conditional_edges("decide", route, {"act": "act", "deploy": "deploy"})
    g.add_edge("act", "train")
    g.add_edge("deploy", END)
    return g.compile(checkpointer=checkpointer)


def _checkpointer() -> tuple[Any, sqlite3.Connection]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(home_dir() / "checkpoints.sqlite", check_same_thread=False)
    return SqliteSaver(conn), conn


def run_planner(
    prompt: str | None = None,
    options: RunOptions | None = None,
    plan: PlanOptions | None = None,
    *,
    resume: str | None = None,
    progress: bool = True,
    llm: Any = None,
    store: RunStore | None = None,
) -> RunResult:
    """Run (or resume) the planner until the target, the budget or a plateau, then deploy the best model."""
    store = store or open_store()
    plan = plan or PlanOptions()
    run_id, folder, prompt, options, config = open_run(store, prompt, options, resume,
                                                       {"plan": dataclasses.asdict(plan)})  # fmt: skip
    if resume:
        plan = PlanOptions(**config.get("plan", {}))
    eval_pairs = load_jsonl_pairs(options.eval_file) if options.eval_file else None
    r = _Run(store, run_id, folder, prompt, options, progress, llm)
    planner = _Planner(r, plan, eval_pairs)
    saver, conn = _checkpointer()
    config = {"configurable": {"thread_id": run_id}, "recursion_limit": 8 * plan.max_rounds + 10}
    _log(progress, f"run {run_id} → {folder} (planner: target {plan.target}, decider {plan.decider})")
    with recorded(store, run_id), contextlib.closing(r), contextlib.closing(conn):
        graph = build_graph(planner, saver)
        started = graph.get_state(config).next
        # "sync": each step's checkpoint is on disk before the next step starts; LangGraph's default
        # ("async") writes it while the next runs, so a SIGKILL could lose a decision and resume would
        # decide again from older state (tests/test_faults.py caught that)
        graph.invoke(
            None if started else {"round": 0, "scores": [], "elapsed": 0.0}, config, durability="sync"
        )
    report = json.loads((folder / "report.json").read_text())
    return RunResult(run_id, folder, TaskSpec.from_dict(report["task"]), report)


def trajectory(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    """Validation score per experiment, in order."""
    return [{"name": e["name"], "score": e["report"]["score"], "n_train": e["n_train"]}
            for e in store.experiments(run_id)]  # fmt: skip


def write_plot(store: RunStore, run_id: str, path: Path) -> Path | None:
    """A PNG of the metric over experiments, with the decisions between rounds."""
    points = trajectory(store, run_id)
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    xs = list(range(1, len(points) + 1))
    ax.plot(xs, [p["score"] for p in points], marker="o")
    for x, p in zip(xs, points, strict=True):
        ax.annotate(
            p["name"], (x, p["score"]), fontsize=7, rotation=30, textcoords="offset points", xytext=(0, 6)
        )
    ax.set_xlabel("experiment")
    ax.set_ylabel("validation score")
    ax.set_title(f"{run_id}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
