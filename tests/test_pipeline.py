"""The whole fixed pipeline on the fake teacher: a loadable model, a card, resumable."""

from __future__ import annotations

import json

import pytest

from p2m.agent.options import RunOptions, open_store
from p2m.errors import RunInterrupted
from p2m.tools.generate import GenConfig
from p2m.tools.train import TrainConfig
from tests.helpers import run_once

PROMPT = "Classify customer support tickets as billing, bug or other.\n\nInput: I was charged twice\nOutput: billing"


def _opts(**kw) -> RunOptions:
    return RunOptions(
        gen=GenConfig(examples=kw.pop("examples", 60), minutes=0), train=TrainConfig(epochs=1), **kw
    )


def test_run_deploys_a_loadable_model_and_card(fake_llm):
    res = run_once(PROMPT, _opts(), llm=fake_llm, progress=False)
    assert res.spec.labels == ["billing", "bug", "other"]
    folder = res.folder
    assert (folder / "README.md").read_text().startswith("# p2m model")
    report = json.loads((folder / "report.json").read_text())
    assert report["validation"]["score"] > 0.8  # the fake teacher's labels are learnable
    assert open_store().get_run(res.run_id)["status"] == "complete"
    candidates = [p.stat().st_ino for p in folder.glob("candidates/*/model.safetensors")]
    assert (folder / "model" / "model.safetensors").stat().st_ino in candidates  # linked, not copied
    from transformers import pipeline

    if report["student"]["kind"] == "sequence-classifier":
        clf = pipeline("text-classification", model=str(folder / "model"))
        assert clf("refund my invoice payment")[0]["label"] in res.spec.labels


def test_interrupt_then_resume_redoes_nothing(fake_llm, fake_chat):
    calls = {"n": 0}
    real = fake_chat.responder

    def flaky(messages, params):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return real(messages, params)

    fake_chat.responder = flaky
    with pytest.raises(RunInterrupted, match="p2m resume"):
        run_once(PROMPT, _opts(), llm=fake_llm, progress=False)
    store = open_store()
    run = store.list_runs()[-1]
    assert run["status"] == "interrupted"
    before = len(store.examples(run["id"], kept=None))
    assert before >= 16  # batches of 8 were stored as they came
    fake_chat.responder = real
    res = run_once(resume=run["id"], llm=fake_llm, progress=False)
    rows = store.examples(run["id"], kept=None)
    indexes = [r["request_index"] for r in rows]
    assert len(indexes) == len(set(indexes)), "a generation request was made twice"
    assert store.get_run(res.run_id)["status"] == "complete"
