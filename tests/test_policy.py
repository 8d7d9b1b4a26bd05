"""The rule policy and the guard, on hand-made run summaries."""

from __future__ import annotations

from p2m.agent.policy import Budget, guard, rule_decide, summarize
from p2m.tools.types import Decision


def _summary(**kw):
    base = dict(
        target=0.9,
        scores=[0.70],
        per_label={"world": 0.6, "sports": 0.95, "business": 0.55, "technology": 0.8},
        confusions=[("business", "technology", 12), ("world", "business", 5)],
        examples={"world": {"generated": 100}},
        actions=[],
        budget=Budget(minutes=20, llm_calls=3000, used_seconds=300, used_calls=600),
        calls_per_example=1.2,
        seconds_per_round=120,
        retrieval_possible=False,
        models=[{"id": "big", "fits": False, "tried": False}, {"id": "small", "fits": True, "tried": True}],
    )
    base.update(kw)
    return summarize(**base)


def test_rules_target_budget_and_plateau_stop() -> None:
    assert rule_decide(_summary(scores=[0.7, 0.91])).action == "stop"
    spent = rule_decide(_summary(budget=Budget(llm_calls=600, used_calls=600)))
    assert spent.action == "stop" and "budget" in spent.reason
    flat = rule_decide(_summary(actions=[{"action": "generate_more", "gain": 0.001},
                                         {"action": "generate_more", "gain": -0.002}]))  # fmt: skip
    assert flat.action == "stop" and "plateau" in flat.reason
    tiny = rule_decide(_summary(budget=Budget(llm_calls=630, used_calls=600)))
    assert tiny.action == "stop" and "useful round" in tiny.reason
    late = rule_decide(_summary(budget=Budget(minutes=6, used_seconds=300)))
    assert late.action == "stop" and "time" in late.reason


def test_rules_target_the_weakest_labels_and_their_confusions() -> None:
    d = rule_decide(_summary())
    assert d.action == "generate_more" and d.by == "rule"
    assert d.args["labels"] == ["business", "world"] and d.args["style"] == "confusable"
    assert ["business", "technology"] in d.args["pairs"]
    assert 40 <= d.args["n"] <= 200
    assert rule_decide(_summary(retrieval_possible=True)).action == "retrieve"


def test_rules_do_not_repeat_what_did_not_help() -> None:
    first = rule_decide(_summary())
    again = rule_decide(_summary(actions=[{"action": first.action, "args": first.args, "gain": 0.0}]))
    assert again.action == "generate_more" and again.args["labels"] == [
        "world",
        "sports",
        "business",
        "technology",
    ]


def test_guard_rejects_illegal_and_wasteful_decisions() -> None:
    s = _summary()
    assert guard(Decision("dance", "why not"), s).startswith("unknown action")
    assert guard(Decision("stop", "done"), s) is None
    assert "perfect" in guard(Decision("generate_more", "", "llm", {"labels": ["sports"], "n": 50}),
                              _summary(per_label={"sports": 1.0, "world": 0.5}))  # fmt: skip
    assert "calls" in guard(Decision("generate_more", "", "llm", {"labels": ["world"], "n": 5000}), s)
    assert "n > 0" in guard(Decision("generate_more", "", "llm", {"labels": ["world"]}), s)
    assert "unknown labels" in guard(Decision("generate_more", "", "llm", {"labels": ["weather"], "n": 9}), s)
    assert "does not fit" in guard(Decision("switch_model", "", "llm", {"name": "big"}), s)
    assert "already tried" in guard(Decision("switch_model", "", "llm", {"name": "small"}), s)
    assert "nothing loadable" in guard(Decision("retrieve", "", "llm", {"query": "news"}), s)
    assert "epochs" in guard(Decision("tune", "", "llm", {"epochs": 99}), s)
    assert "tune takes" in guard(Decision("tune", "", "llm", {"batch": 3}), s)
    assert guard(Decision("tune", "", "llm", {"epochs": 6}), s) is None
    ok = Decision("generate_more", "", "llm", {"labels": ["world"], "n": 100})
    assert guard(ok, s) is None
    assert "did not help" in guard(
        ok, _summary(actions=[{"action": "generate_more", "args": ok.args, "gain": 0.0}])
    )
    assert "target" in guard(ok, _summary(scores=[0.95]))
    assert "budget is spent" in guard(ok, _summary(budget=Budget(llm_calls=10, used_calls=10)))


def test_summary_prompt_is_compact() -> None:
    p = _summary().to_prompt()
    assert p["llm_calls_left"] == 2400 and p["top_confusions"][0] == "business → technology: 12"
    assert set(p) >= {"target", "validation_scores", "per_label_f1", "previous_actions", "models"}
