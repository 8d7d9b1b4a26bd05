"""The rule policy and the guard, on hand-made run summaries — every action, and switch_model for each reason."""

from __future__ import annotations

from p2m.agent.policy import Budget, Summary, guard, rule_decide
from p2m.tools.types import Decision


def _est(score, rows, half=0.1):
    return {"score": score, "rows": rows, "low": max(0.0, score - half), "high": min(1.0, score + half)}


def _models():
    return [
        {"id": "quick-trial", "params_m": 22.7, "fits": True, "tried": True, "ms_per_example": 2.0},
        {"id": "finetune", "params_m": 22.7, "fits": True, "tried": True, "ms_per_example": 4.0},
        {"id": "big", "params_m": 400.0, "fits": False, "why_not": "needs 9.6 GB to train, 3.1 GB available",
         "tried": False},
        {"id": "nc-model", "params_m": 60.0, "fits": False, "why_not": "licence cc-by-nc-4.0 is not in the allowed list",
         "tried": False},
        {"id": "smollm-cls", "params_m": 134.5, "fits": True, "tried": False},
    ]  # fmt: skip


def _summary(**kw) -> Summary:
    base = dict(
        target=0.9,
        rounds=[
            {
                "student": "finetune",
                "teacher": _est(0.70, 60),
                "real": None,
                "ms_per_example": 4.0,
                "train_fit": 0.97,
            }
        ],  # fmt: skip
        per_label={"world": 0.6, "sports": 0.95, "business": 0.55, "technology": 0.8},
        confusions=[("business", "technology", 12), ("world", "business", 5)],
        examples={"world": {"generated": 100}},
        actions=[],
        budget=Budget(minutes=20, llm_calls=3000, used_seconds=300, used_calls=600),
        calls_per_example=1.2,
        seconds_per_round=120,
        retrieval_possible=False,
        models=_models(),
    )
    base.update(kw)
    return Summary(**base)


def test_rules_target_budget_and_plateau_stop() -> None:
    reached = rule_decide(_summary(rounds=[{"student": "finetune", "teacher": _est(0.91, 60), "real": None}]))
    assert reached.action == "stop" and "teacher-written" in reached.reason
    spent = rule_decide(_summary(budget=Budget(llm_calls=600, used_calls=600)))
    assert spent.action == "stop" and "budget" in spent.reason
    flat = rule_decide(_summary(actions=[{"action": "generate_more", "gain": 0.02, "significant": False},
                                         {"action": "generate_more", "gain": -0.002, "significant": False}]))  # fmt: skip
    assert flat.action == "stop" and "plateau" in flat.reason and "noise" in flat.reason
    tiny = rule_decide(_summary(budget=Budget(llm_calls=620, used_calls=600)))
    assert tiny.action == "stop" and "useful round" in tiny.reason
    # a small run: 21 more examples are a useful round when it has 17 (code costs ~3.5 calls an example)
    code = dict(per_label={}, confusions=[], task_type="text_to_code", calls_per_example=3.5,
                examples={"all": {"generated": 17}}, budget=Budget(llm_calls=150, used_calls=78))  # fmt: skip
    small = rule_decide(_summary(**code))
    assert small.action == "generate_more" and small.args["n"] == 20, small
    assert rule_decide(_summary(**{**code, "budget": Budget(llm_calls=150, used_calls=130)})).action == "stop"
    late = rule_decide(_summary(budget=Budget(minutes=6, used_seconds=300)))
    assert late.action == "stop" and "time" in late.reason


def test_the_target_is_judged_on_real_rows_when_there_are_enough() -> None:
    # teacher-written rows say 0.95, 40 real rows say 0.70: the run goes on
    rounds = [{"student": "finetune", "teacher": _est(0.95, 60), "real": _est(0.70, 40)}]
    assert rule_decide(_summary(rounds=rounds)).action == "generate_more"
    # three real rows cannot judge it: the teacher-written estimate does, and the reason says so
    rounds = [{"student": "finetune", "teacher": _est(0.95, 60), "real": _est(0.67, 3, 0.4)}]
    d = rule_decide(_summary(rounds=rounds))
    assert d.action == "stop" and "teacher-written" in d.reason


def test_a_significant_gain_keeps_the_planner_going() -> None:
    acts = [{"action": "generate_more", "gain": 0.01, "significant": False},
            {"action": "generate_more", "gain": 0.06, "significant": True, "by": "real"}]  # fmt: skip
    assert rule_decide(_summary(actions=acts)).action == "generate_more"


def test_rules_target_the_weakest_labels_and_their_confusions() -> None:
    d = rule_decide(_summary())
    assert d.action == "generate_more" and d.by == "rule"
    assert d.args["labels"] == ["business", "world"] and d.args["style"] == "confusable"
    assert ["business", "technology"] in d.args["pairs"]
    assert 40 <= d.args["n"] <= 200
    assert rule_decide(_summary(retrieval_possible=True)).action == "retrieve"


def test_generation_tasks_get_more_of_the_same_data() -> None:
    d = rule_decide(
        _summary(per_label={}, confusions=[], task_type="data_to_text", examples={"all": {"generated": 80}})
    )
    assert d.action == "generate_more" and "labels" not in d.args and d.args["n"] > 0


def test_rules_do_not_repeat_what_did_not_help() -> None:
    first = rule_decide(_summary())
    again = rule_decide(_summary(actions=[{"action": first.action, "args": first.args, "gain": 0.0,
                                           "significant": False}]))  # fmt: skip
    assert again.action == "generate_more" and again.args["labels"] == [
        "world",
        "sports",
        "business",
        "technology",
    ]


def test_switch_model_for_latency() -> None:
    models = [{"id": "lora", "params_m": 134.5, "fits": True, "tried": True, "ms_per_example": 90.0},
              {"id": "lora-16L", "params_m": 77.0, "fits": True, "tried": False}]  # fmt: skip
    rounds = [
        {"student": "lora", "teacher": _est(0.5, 40), "real": None, "ms_per_example": 90.0, "train_fit": 0.9}
    ]
    d = rule_decide(_summary(rounds=rounds, models=models, per_label={}, confusions=[], max_latency_ms=50))
    assert d.action == "switch_model" and d.args["name"] == "lora-16L" and "latency" in d.reason
    # within the bound: no switch
    d = rule_decide(_summary(rounds=rounds, models=models, per_label={}, confusions=[], max_latency_ms=100))
    assert d.action != "switch_model"


def test_switch_model_when_the_student_underfits() -> None:
    rounds = [{"student": "finetune", "teacher": _est(0.70, 60), "real": None, "ms_per_example": 4.0,
               "train_fit": 0.72}]  # fmt: skip
    d = rule_decide(_summary(rounds=rounds))
    assert d.action == "switch_model" and d.args["name"] == "smollm-cls" and "underfit" in d.reason
    # a bound the bigger model would miss: no switch for underfitting
    d = rule_decide(_summary(rounds=rounds, max_latency_ms=5.0))
    assert d.action != "switch_model"


def test_guard_rejects_models_that_do_not_fit_by_licence_or_memory() -> None:
    s = _summary()
    mem = guard(Decision("switch_model", "", "llm", {"name": "big"}), s)
    assert "does not fit" in mem and "GB" in mem
    lic = guard(Decision("switch_model", "", "llm", {"name": "nc-model"}), s)
    assert "does not fit" in lic and "licence" in lic
    assert "already tried" in guard(Decision("switch_model", "", "llm", {"name": "finetune"}), s)
    assert "unknown model" in guard(Decision("switch_model", "", "llm", {"name": "gpt-5"}), s)
    assert guard(Decision("switch_model", "", "llm", {"name": "smollm-cls"}), s) is None


def test_guard_rejects_illegal_and_wasteful_decisions() -> None:
    s = _summary()
    assert guard(Decision("dance", "why not"), s).startswith("unknown action")
    assert guard(Decision("stop", "done"), s) is None
    assert "perfect" in guard(Decision("generate_more", "", "llm", {"labels": ["sports"], "n": 50}),
                              _summary(per_label={"sports": 1.0, "world": 0.5}))  # fmt: skip
    assert "calls" in guard(Decision("generate_more", "", "llm", {"labels": ["world"], "n": 5000}), s)
    assert "n > 0" in guard(Decision("generate_more", "", "llm", {"labels": ["world"]}), s)
    assert "unknown labels" in guard(Decision("generate_more", "", "llm", {"labels": ["weather"], "n": 9}), s)
    assert "nothing loadable" in guard(Decision("retrieve", "", "llm", {"query": "news"}), s)
    assert guard(Decision("tune", "", "llm", {"epochs": 6}), s).startswith("unknown action")  # taken out
    ok = Decision("generate_more", "", "llm", {"labels": ["world"], "n": 100})
    assert guard(ok, s) is None
    assert "did not help" in guard(
        ok,
        _summary(actions=[{"action": "generate_more", "args": ok.args, "gain": 0.0, "significant": False}]),
    )
    assert "target" in guard(
        ok, _summary(rounds=[{"student": "finetune", "teacher": _est(0.95, 60), "real": None}])
    )
    assert "budget is spent" in guard(ok, _summary(budget=Budget(llm_calls=10, used_calls=10)))


def test_summary_prompt_is_compact_and_shows_both_estimates() -> None:
    rounds = [
        {"student": "finetune", "teacher": _est(0.93, 60), "real": _est(0.7, 12), "ms_per_example": 4.0}
    ]
    p = _summary(rounds=rounds).to_prompt()
    assert p["llm_calls_left"] == 2400 and p["top_confusions"][0] == "business → technology: 12"
    assert set(p) >= {"target", "rounds", "per_label_f1", "previous_actions", "models"}
    assert (
        "on 12 rows" in p["rounds"][0]["real_rows"] and "on 60 rows" in p["rounds"][0]["teacher_written_rows"]
    )
    assert any("GB" in (m["why_not"] or "") for m in p["models"])


def test_a_few_real_rows_wholly_below_the_target_veto_it() -> None:
    # teacher-written rows perfect, 3 real rows with 1 right: 90% interval ≈ 0.06–0.79, all below 0.95
    rounds = [{"student": "finetune", "teacher": _est(1.0, 60, 0.0), "real": {"score": 0.33, "rows": 3, "low": 0.06,
                                                                             "high": 0.79}}]  # fmt: skip
    assert rule_decide(_summary(target=0.95, rounds=rounds)).action == "generate_more"


def _cand(name: str, teacher_rows: list[float], real_rows: list[float] | None = None) -> dict:
    c = {"name": name, "metric": "accuracy", "score": sum(teacher_rows) / len(teacher_rows),
         "report": {"rows": teacher_rows}}  # fmt: skip
    if real_rows is not None:
        c["report"]["real"] = {"rows": real_rows}
        c["real"] = {"score": sum(real_rows) / len(real_rows), "rows": len(real_rows)}
    return c


def test_the_best_round_is_the_later_one_unless_an_earlier_one_leads_beyond_the_noise():
    from p2m.agent.scoring import later_round

    # ten teacher-written rows, 0.8 against 0.7: one row apart, inside the noise — the later round, trained on
    # more rows, is kept (the point estimate kept the earlier one)
    r0 = _cand("r0", [1.0] * 8 + [0.0] * 2)
    r2 = _cand("r2", [1.0] * 7 + [0.0] * 3)
    assert later_round(r0, r2)[0] is r2 and "noise" in later_round(r0, r2)[1]
    # sixty rows, 0.95 against 0.60: a lead beyond the noise keeps the earlier round
    a, b = _cand("r0", [1.0] * 57 + [0.0] * 3), _cand("r1", [1.0] * 36 + [0.0] * 24)
    assert later_round(a, b)[0] is a
    # real rows decide when they differ beyond the noise, whatever the teacher-written rows say
    a = _cand("r0", [1.0] * 60, real_rows=[0.0] * 40)
    b = _cand("r1", [0.0] * 60, real_rows=[1.0] * 40)
    assert later_round(a, b)[0] is b and later_round(b, a)[0] is b


def test_a_perfect_score_on_teacher_written_rows_is_no_reason_to_stop_while_budget_is_left():
    perfect = {"student": "finetune", "teacher": _est(1.0, 13, half=0.19), "real": None, "train_fit": 1.0}
    d = rule_decide(_summary(target=None, rounds=[perfect], per_label={"positive": 1.0, "negative": 1.0}))
    assert d.action == "generate_more" and d.args["labels"] == ["positive", "negative"], d
    assert "13 rows" in d.reason and "too easy" in d.reason
    # the same round already ran and did not help: stop, saying why
    again = {"action": "generate_more", "args": d.args, "gain": 0.0, "significant": False}
    d2 = rule_decide(_summary(target=None, rounds=[perfect], per_label={"positive": 1.0, "negative": 1.0},
                              actions=[again]))  # fmt: skip
    assert d2.action == "stop" and "did not help" in d2.reason, d2
    # and the budget still stops it
    spent = rule_decide(_summary(target=None, rounds=[perfect], per_label={"positive": 1.0, "negative": 1.0},
                                 budget=Budget(llm_calls=600, used_calls=600)))  # fmt: skip
    assert spent.action == "stop" and "budget" in spent.reason
