"""The planner loop on the fake teacher: rule and LLM decisions, the guard, stops, resume, show."""

from __future__ import annotations

import json

import pytest

from p2m.agent.cli import main
from p2m.agent.options import RunOptions, open_store
from p2m.agent.planner import PlanOptions, run_planner
from p2m.errors import ConfigError, RunInterrupted
from p2m.tools.generate import GenConfig
from p2m.tools.llm import LLMClient
from p2m.tools.train import TrainConfig
from tests.fakes import FakeChatModel, default_reply

PROMPT = "Classify customer support tickets as billing, bug or other.\n\nInput: I was charged twice\nOutput: billing"
# demonstrations the fake teacher's data cannot teach: validation stays below 1, so the planner keeps working
HARD = PROMPT + (
    "\n\nInput: invoice crash refund error payment glitch\nOutput: other"
    "\n\nInput: hello careers office charged receipt\nOutput: bug"
)


def _opts(**kw) -> RunOptions:
    return RunOptions(gen=GenConfig(examples=kw.pop("examples", 45), minutes=0), train=TrainConfig(epochs=1),
                      finetune=kw.pop("finetune", False), **kw)  # fmt: skip


def _noisy(messages, params):
    """A teacher whose 'other' examples look like billing ones: the student cannot be perfect at first."""
    reply = default_reply(messages, params)
    user = next((c for r, c in reversed(messages) if r == "user"), "")
    if "Write a new other" in user and (params.get("seed") or 0) % 2:
        data = json.loads(reply)
        data["text"] = data["text"] + " invoice charged refund payment"
        return json.dumps(data)
    return reply


def test_rule_planner_rounds_until_the_round_limit_and_explains(fake_llm, fake_chat) -> None:
    fake_chat.responder = _noisy
    res = run_planner(HARD, _opts(), PlanOptions(target=0.999, max_rounds=3, decider="rule"), llm=fake_llm,
                      progress=False)  # fmt: skip
    store = open_store()
    decisions = store.decisions(res.run_id)
    acts = [d["action"] for d in decisions if d["action"] in ("generate_more", "stop", "retrieve")]
    assert acts[-1] == "stop" and all(d["by"] == "rule" for d in decisions)
    assert res.report["planner"]["rounds"] >= 2 and len(res.report["planner"]["scores"]) >= 2
    more = [d for d in decisions if d["action"] == "generate_more" and d["args"].get("round") == 1]
    assert more and more[0]["args"]["n"] > 0 and "weakest labels" in more[0]["reason"]
    if more[0]["args"]["style"] == "confusable":  # the requests name the label they must not look like
        asked = [str(h) for h in fake_chat.history]
        assert any("It must be clearly" in a for a in asked)
    rows = store.examples(res.run_id, kept=True, source_prefix="generated:")
    later = [r for r in rows if (r["quality"] or {}).get("round", 0) > 0]
    assert later and all(r["split"] == "train" for r in later)  # validation stays fixed after round 0
    gen = res.report["data"]["generation"]  # the report counts every round's generation
    assert gen["rounds"] == res.report["planner"]["rounds"] and gen["usable"] >= len(rows)
    assert (res.folder / "trajectory.png").stat().st_size > 1000
    assert (res.folder / "model").is_dir()


def test_target_reached_stops_at_once(fake_llm) -> None:
    res = run_planner(PROMPT, _opts(), PlanOptions(target=0.5, decider="rule"), llm=fake_llm, progress=False)
    stop = [d for d in open_store().decisions(res.run_id) if d["action"] == "stop"]
    assert stop and "target 0.5 reached" in stop[0]["reason"] and res.report["planner"]["rounds"] == 1


def test_budget_stop(fake_llm, fake_chat) -> None:
    fake_chat.responder = _noisy
    res = run_planner(HARD, _opts(), PlanOptions(target=0.999, budget_llm_calls=60, decider="rule"), llm=fake_llm,
                      progress=False)  # fmt: skip
    stop = [d for d in open_store().decisions(res.run_id) if d["action"] == "stop"][0]
    assert "budget" in stop["reason"] or "useful round" in stop["reason"]
    led = open_store().ledger(res.run_id)
    assert led["calls"] <= 60 + 1


def test_llm_decides_and_the_guard_overrules_it() -> None:
    chat = FakeChatModel()
    llm = LLMClient(chat, "fake-strong", "json_schema", capable=True)
    answers = iter([
        {"action": "generate_more", "labels": ["other"], "n": 30, "style": "more", "reason": "other is weak"},
        {"action": "switch_model", "name": "gpt-5", "reason": "bigger is better"},  # illegal: the guard says no
    ])  # fmt: skip

    def responder(messages, params):
        if any("You plan how to improve" in c for _, c in messages):
            return json.dumps(next(answers, {"action": "stop", "reason": "good enough"}))
        return _noisy(messages, params)

    chat.responder = responder
    res = run_planner(HARD, _opts(), PlanOptions(target=0.999, max_rounds=4, decider="auto"), llm=llm,
                      progress=False)  # fmt: skip
    decisions = open_store().decisions(res.run_id)
    first = next(d for d in decisions if d["action"] == "generate_more" and d["args"].get("round") == 1)
    assert first["by"] == "llm" and first["args"]["labels"] == ["other"] and first["args"]["n"] == 30
    rejected = [d for d in decisions if d["action"] == "rejected:switch_model"]
    assert rejected and "unknown model" in rejected[0]["reason"]
    after = decisions[decisions.index(rejected[0]) + 1]
    assert after["by"] == "rule"  # the rule policy decided instead


def test_interrupted_planner_resumes_without_repeating_requests(fake_llm, fake_chat) -> None:
    calls = {"n": 0}

    def flaky(messages, params):
        calls["n"] += 1
        if calls["n"] == 70:  # inside the second round's generation
            raise KeyboardInterrupt
        return _noisy(messages, params)

    fake_chat.responder = flaky
    with pytest.raises(RunInterrupted, match="p2m resume"):
        run_planner(HARD, _opts(), PlanOptions(target=0.999, max_rounds=3, decider="rule"), llm=fake_llm,
                    progress=False)  # fmt: skip
    store = open_store()
    run = store.list_runs()[-1]
    assert run["status"] == "interrupted" and store.stage_info(run["id"], "train:0") is not None
    fake_chat.responder = _noisy
    res = run_planner(resume=run["id"], llm=fake_llm, progress=False)
    rows = store.examples(res.run_id, kept=None)
    idx = [r["request_index"] for r in rows if r["request_index"] is not None]
    assert len(idx) == len(set(idx)), "a generation request was made twice"
    assert store.get_run(res.run_id)["status"] == "complete"
    names = [e["name"] for e in store.experiments(res.run_id)]
    assert len(names) == len(set(names)), "an experiment was trained twice"


def test_show_prints_decisions_and_trajectory(fake_llm, capsys) -> None:
    res = run_planner(PROMPT, _opts(), PlanOptions(target=0.5, decider="rule"), llm=fake_llm, progress=False)
    main(["show", res.run_id])
    out = capsys.readouterr().out
    assert "decisions:" in out and "[rule] stop" in out and "r0-quick-trial" in out and "plot:" in out
    tried = out[out.index("models tried") :]
    assert "real 1.000 on   1" in tried and "teacher-written" in tried and "ms/example" in tried
    with pytest.raises(SystemExit) as e:
        main(["show", "nope"])
    assert e.value.code == 1 and "no run 'nope'" in capsys.readouterr().err


def test_plan_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="target"):
        PlanOptions(target=3)
    with pytest.raises(ConfigError, match="decider"):
        PlanOptions(decider="coin")


def test_graph_wiring_is_stable(fake_llm) -> None:
    from p2m.agent.planner import Planner, build_graph
    from p2m.agent.run import Run

    planner = Planner(Run(open_store(), "x", None, "", _opts(), False, fake_llm), PlanOptions())
    drawing = build_graph(planner).get_graph().draw_mermaid()
    # a resumed run enters where the store says it stopped
    for edge in ("__start__ -.-> prepare", "__start__ -.-> train", "__start__ -.-> decide", "__start__ -.-> act",
                 "__start__ -.-> deploy", "prepare --> train", "train --> decide", "decide -.-> act",
                 "decide -.-> deploy", "act --> train", "deploy --> __end__"):  # fmt: skip
        assert edge in drawing, drawing


def _tiny_bert_in_cache(cache) -> str:
    """A 2-layer, 32-wide BERT with a WordPiece tokenizer, in the HF cache layout; returns its repo id."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from tests.test_models import cached

    src = cache.parent / "tiny-bert-src"
    src.mkdir()
    words = ("[PAD] [UNK] [CLS] [SEP] [MASK] i was charged twice the app crashes bill bug error payment refund "
             "hello other invoice ##s ##ed").split()  # fmt: skip
    (src / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(src / "vocab.txt")).save_pretrained(src)
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=128)  # fmt: skip
    BertModel(config).save_pretrained(src)
    files = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}
    files["README.md"] = b"---\nlicense: apache-2.0\n---\n# tiny\n"
    cached(cache, "p2m-test/tiny-bert", files)
    return "p2m-test/tiny-bert"


def test_an_llm_decider_switches_to_an_encoder_from_the_hf_cache(tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    cache = tmp_path / "hf_cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    repo = _tiny_bert_in_cache(cache)
    chat = FakeChatModel()
    llm = LLMClient(chat, "fake-strong", "json_schema", capable=True)
    seen = []

    def responder(messages, params):
        if any("You plan how to improve" in c for _, c in messages):
            summary = json.loads(messages[-1][1])
            seen.append(summary["models"])
            if len(seen) == 1:
                return json.dumps(
                    {"action": "switch_model", "name": f"finetune@{repo}", "reason": "try the encoder"}
                )
            return json.dumps({"action": "stop", "reason": "enough"})
        return _noisy(messages, params)

    chat.responder = responder
    # quick trial first (the fine-tune is offered too: --no-finetune would offer nothing bigger)
    res = run_planner(HARD, _opts(finetune=True, students=["quick-trial"]), PlanOptions(max_rounds=3, decider="auto"),
                      llm=llm, progress=False)  # fmt: skip
    offered = {m["id"]: m for m in seen[0]}
    assert offered[f"finetune@{repo}"]["fits"] and not offered[f"finetune@{repo}"]["tried"]
    decisions = open_store().decisions(res.run_id)
    switch = next(d for d in decisions if d["action"] == "switch_model")
    assert switch["by"] == "llm" and switch["args"]["name"] == f"finetune@{repo}"
    tried = [m["name"] for m in res.report["models_tried"]]
    assert tried[0] == "r0-quick-trial" and f"r1-finetune@{repo}" in tried  # trained for real, and recorded
    exp = next(e for e in open_store().experiments(res.run_id) if e["name"] == f"r1-finetune@{repo}")
    assert exp["params"]["base"] == repo and exp["report"]["estimates"]["teacher"]["rows"] > 0
    assert f"finetune@{repo}" in {m["id"] for m in seen[-1] if m["tried"]}


def test_the_smollm_classifier_is_a_student_the_planner_can_train(fake_llm, monkeypatch) -> None:
    import p2m.tools.train as tr

    called = {}

    def smol(train, val, labels, config, progress=True, max_minutes=8.0, soft=None):
        called.update(n=len(train), soft=None if soft is None else soft.shape, minutes=max_minutes)
        student, report, params = tr.train_quick(train, val, labels)  # a quick stand-in for the 135M model
        return student, report, {**params, "stand_in": True}

    monkeypatch.setattr(tr, "finetune_smollm_classifier", smol)
    from tests.helpers import run_once

    res = run_once(PROMPT, _opts(students=["smollm-cls"]), llm=fake_llm, progress=False)
    # distilled from the quick trial, as finetune
    assert called["n"] > 0 and called["soft"] == (called["n"], 3)
    assert res.report["student"]["selected"] == "r0-smollm-cls"
    assert "SmolLM2" in res.report["student"]["base"]
