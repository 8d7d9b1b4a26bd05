"""Resuming at every planner node, for every task kind, in-process: a run is interrupted at each node in turn
(p2m/faults.py `interrupt`), resumed each time, and must end as an uninterrupted run does — the same
examples, experiments and decisions, and no teacher request made twice. (tests/test_faults.py does the same
with SIGKILL through the `p2m` command, for every kind's first round and for the planner on classification.)
"""

from __future__ import annotations

import pytest

from p2m import faults
from p2m.agent.options import RunOptions, open_store
from p2m.agent.planner import PlanOptions, run_planner
from p2m.errors import RunInterrupted
from p2m.tools.generate import GenConfig
from p2m.tools.train import TrainConfig
from tests.test_generate_seq import CODE_PROMPT, D2T_PROMPT, QA_PROMPT
from tests.test_pipeline_seq import memo_students  # noqa: F401, F811 (a fixture)
from tests.test_planner import HARD

# every node's entry, a batch of rows mid-generation, an experiment mid-round, the decision just taken
CHAIN = ["rows@1", "node:train", "experiment", "node:decide", "decision", "node:act", "rows@1", "node:train",
         "node:deploy"]  # fmt: skip
PROMPTS = {
    "classification": HARD,
    "extractive_qa": QA_PROMPT,
    "text_to_code": CODE_PROMPT,
    "data_to_text": D2T_PROMPT,
}


def _opts() -> RunOptions:
    return RunOptions(gen=GenConfig(examples=16, minutes=0), train=TrainConfig(epochs=1), retrieve=False,
                      finetune=False)  # fmt: skip


def _state(run_id: str) -> dict:
    store = open_store()
    rows = store.examples(run_id, kept=None)
    idx = [r["request_index"] for r in rows if r["request_index"] is not None]
    return {"examples": sorted((r["input"], r["output"], r["kept"], r["split"]) for r in rows),
            "twice": len(idx) - len(set(idx)), "experiments": [e["name"] for e in store.experiments(run_id)],
            "decisions": [(d["action"], d["by"]) for d in store.decisions(run_id)],
            "status": store.get_run(run_id)["status"]}  # fmt: skip


@pytest.mark.parametrize("task_type", list(PROMPTS))
@pytest.mark.parametrize("chain", [CHAIN])
def test_interrupted_at_every_node_then_resumed_matches_an_uninterrupted_run(task_type, chain, fake_llm,
                                                                             memo_students, monkeypatch):  # noqa: F811  # fmt: skip
    plan = PlanOptions(target=0.99, max_rounds=2, decider="rule")
    reference = run_planner(PROMPTS[task_type], _opts(), plan, llm=fake_llm, progress=False)
    want = _state(reference.run_id)
    assert want["status"] == "complete" and any(e.startswith("r1-") for e in want["experiments"]), want
    run_id = None
    for point in chain:
        monkeypatch.setenv("P2M_FAULTS", f"{point}=interrupt")
        faults.reset()
        with pytest.raises(RunInterrupted):
            if run_id is None:
                run_planner(PROMPTS[task_type], _opts(), plan, llm=fake_llm, progress=False)
            else:
                run_planner(resume=run_id, llm=fake_llm, progress=False)
        run_id = run_id or open_store().list_runs()[-1]["id"]
    monkeypatch.delenv("P2M_FAULTS")
    res = run_planner(resume=run_id, llm=fake_llm, progress=False)
    got = _state(res.run_id)
    assert got["twice"] == 0, "a teacher request was made twice"
    for key in ("examples", "experiments", "decisions", "status"):
        assert got[key] == want[key], key
