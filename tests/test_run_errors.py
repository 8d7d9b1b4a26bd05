"""How a run fails: readable P2MErrors, and the store left consistent (no run stuck as "running")."""

from __future__ import annotations

import time
import types

import pytest

from p2m.agent import options as pipeline
from p2m.agent.options import RunOptions, open_store
from p2m.errors import DataError, P2MError, TaskError
from p2m.tools.generate import GenConfig
from p2m.tools.train import TrainConfig
from tests.helpers import run_once

PROMPT = "Classify customer support tickets as billing, bug or other."


def _opts(**kw) -> RunOptions:
    return RunOptions(
        gen=GenConfig(examples=kw.pop("examples", 12), minutes=0, seed=kw.pop("seed", 0)),
        train=TrainConfig(epochs=1),
        finetune=False,
        **kw,
    )


def test_malformed_eval_file_leaves_no_run_running(tmp_path, fake_llm):
    bad = tmp_path / "eval.jsonl"
    bad.write_text('{"input": "x", "output": "billing"}\n{oops\n')
    with pytest.raises(DataError, match=r"eval.jsonl:2:"):
        run_once(PROMPT, _opts(eval_file=str(bad)), llm=fake_llm, progress=False)
    stuck = [r for r in open_store().list_runs() if r["status"] == "running"]
    assert stuck == [], f"runs left 'running' after the error: {stuck}"


def test_two_runs_of_one_prompt_in_the_same_second_get_distinct_ids(monkeypatch, fake_llm):
    # Scripts and retries start runs quickly; the id must not collide (sqlite3.IntegrityError).
    frozen = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("__")})
    frozen.strftime = lambda fmt, *a: time.strftime(fmt, time.localtime(1_800_000_000))
    monkeypatch.setattr(pipeline, "time", frozen)
    for _ in range(2):
        with pytest.raises(TaskError, match="could not find a task"):
            run_once("hello there", _opts(), llm=fake_llm, progress=False)
    runs = open_store().list_runs()
    assert len(runs) == 2 and runs[0]["id"] != runs[1]["id"]


def test_no_validation_split_is_not_a_crash(monkeypatch, fake_llm):
    # With few examples and no demonstrations in the prompt, the hash split can put every row in
    # train (0.85^n); training must then not crash with a sklearn ValueError.
    monkeypatch.setattr("p2m.tools.generate._split_of", lambda text, val_fraction: "train")
    try:
        res = run_once("Classify tickets as billing or bug.", _opts(examples=6), llm=fake_llm, progress=False)
    except P2MError:
        return  # a readable error ("raise --examples") is fine too
    assert res.report["validation"]["n"] > 0


def test_task_p2m_cannot_build_is_a_task_error_and_marks_the_run_failed(fake_llm):
    with pytest.raises(TaskError, match="Python code only"):
        run_once("Write JavaScript code for the described function.", _opts(), llm=fake_llm, progress=False)
    (run,) = open_store().list_runs()
    assert run["status"] == "failed"
