"""Synthetic data: text cleaning, per-label generation with budgets and resume, curation, diversity."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from p2m.errors import ConfigError
from p2m.tools.generate import GenConfig, clean_text, curate, diversity, generate_examples, request_messages
from p2m.tools.types import TaskSpec
from tests.fakes import default_reply


@pytest.fixture
def spec() -> TaskSpec:
    return TaskSpec(
        instruction="Classify support tickets as billing, bug or other.",
        demonstrations=[("I was charged twice this month", "billing"), ("the app crashes on start", "bug")],
        labels=["billing", "bug", "other"],
        input_kind="support ticket",
    )


def _cfg(**kw) -> GenConfig:
    return GenConfig(**{"examples": 12, "minutes": 0, "block": 2, **kw})


# clean_text ----------------------------------------------------------------------------------------


def test_clean_text_keeps_and_normalises(spec):
    assert clean_text('  "My   card was\n charged twice"  ', spec) == ("My card was charged twice", None)


@pytest.mark.parametrize("raw", [None, 42, ["a list"], {"text": "x"}])
def test_clean_text_non_string_is_invalid_json(spec, raw):
    assert clean_text(raw, spec) == (None, "invalid_json")


@pytest.mark.parametrize("raw", ["", "   ", "refund", "refund please", '"too short"'])
def test_clean_text_too_short(spec, raw):
    assert clean_text(raw, spec) == (None, "too_short")


@pytest.mark.parametrize(
    "raw",
    [
        "Input: my card was charged twice",
        "my card was charged twice. Label: billing",
        "The correct label is billing for this one",
        "Here is a new billing example about cards",
        "This support ticket is about a refund",  # the (multi-word) input kind itself
    ],
)
def test_clean_text_talks_about_task(spec, raw):
    assert clean_text(raw, spec) == (None, "talks_about_task")


def test_single_word_input_kind_is_not_a_meta_cue(spec):
    spec.input_kind = "ticket"
    assert clean_text("This ticket is about a refund", spec) == ("This ticket is about a refund", None)


# request_messages ----------------------------------------------------------------------------------


def test_request_messages_name_the_label_and_its_demonstrations_only(spec):
    (role_s, system), (role_u, user) = request_messages(spec, "billing", 0)
    assert (role_s, role_u) == ("system", "user")
    assert spec.instruction in system
    assert "I was charged twice this month" in system
    assert "the app crashes on start" not in system
    assert user.startswith("Write a new billing support ticket.")


def test_request_messages_without_demonstrations_use_the_description(spec):
    spec.label_descriptions = {"other": "anything that is neither billing nor a bug"}
    system = request_messages(spec, "other", 0)[0][1]
    assert "anything that is neither billing nor a bug" in system


# GenConfig -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"examples": 1}, "examples"),
        ({"temperature": 3.0}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
    ],
)
def test_gen_config_validation_names_the_field(kw, field):
    with pytest.raises(ConfigError, match=field) as err:
        GenConfig(**kw)
    assert str(next(iter(kw.values()))) in str(err.value)


@pytest.mark.parametrize(
    ("kw", "field", "value"),
    [
        ({"minutes": -1}, "minutes", "-1"),
        ({"max_calls": -2}, "max_calls", "-2"),
        ({"block": -3}, "block", "-3"),
    ],
)
def test_gen_config_budget_validation_names_field_and_value(kw, field, value):
    with pytest.raises(ConfigError, match=field) as err:
        GenConfig(**kw)
    assert value in str(err.value), f"the message does not say which value was bad: {err.value}"


# generate_examples ---------------------------------------------------------------------------------


def test_generation_reaches_the_per_label_target(spec, fake_llm):
    rows: list[dict] = []
    stats = generate_examples(spec, fake_llm, _cfg(), on_rows=rows.extend, run_id="r1")
    assert stats["stopped_by"] == "target"
    assert stats["usable"] == 12 and stats["requests"] == 12
    assert Counter(r["output"] for r in rows if r["kept"]) == {"billing": 4, "bug": 4, "other": 4}
    assert all(r["source"] == "generated:r1" and r["split"] == "train" for r in rows)
    assert sorted(r["request_index"] for r in rows) == list(range(12))


def test_target_rounds_up_over_labels(spec, fake_llm):
    rows: list[dict] = []
    generate_examples(spec, fake_llm, _cfg(examples=10), on_rows=rows.extend)
    assert Counter(r["output"] for r in rows if r["kept"]) == {"billing": 4, "bug": 4, "other": 4}


def test_requests_use_fixed_label_blocks_and_per_index_seeds(spec, fake_llm, fake_chat):
    rows: list[dict] = []
    generate_examples(spec, fake_llm, _cfg(block=2, seed=100, temperature=0.7), on_rows=rows.extend)
    for r in rows:
        assert r["output"] == spec.labels[(r["request_index"] // 2) % 3]
    by_seed = {c["params"]["seed"]: c for c in fake_chat.history}
    assert sorted(by_seed) == [100 + r["request_index"] for r in rows]
    for r in rows:
        call = by_seed[100 + r["request_index"]]
        assert f"Write a new {r['output']} " in call["messages"][-1][1]
        assert call["params"]["temperature"] == 0.7
        assert call["params"]["response_format"]["schema"]["required"] == ["text"]


def test_unusable_replies_are_stored_with_their_reason(spec, fake_llm, fake_chat):
    fake_chat.enqueue(
        "not json",
        json.dumps({"text": "ok"}),
        json.dumps({"text": "I was charged twice this month"}),  # a demonstration
        json.dumps({"text": "Input: charged twice for nothing"}),
        json.dumps({"wrong_key": "my invoice is wrong again"}),
    )
    rows: list[dict] = []
    stats = generate_examples(spec, fake_llm, _cfg(examples=6), on_rows=rows.extend)
    dropped = {r["request_index"]: r["drop_reason"] for r in rows if not r["kept"]}
    assert dropped == {
        0: "invalid_json",
        1: "too_short",
        2: "duplicate",
        3: "talks_about_task",
        4: "invalid_json",
    }
    assert all(r["drop_reason"] is None for r in rows if r["kept"])
    assert stats["requests"] == len(rows) == stats["usable"] + 5
    assert Counter(r["output"] for r in rows if r["kept"]) == {"billing": 2, "bug": 2, "other": 2}


def test_repeated_text_is_a_duplicate(spec, fake_llm, fake_chat):
    same = json.dumps({"text": "My card was charged twice for one order"})
    fake_chat.enqueue(same, same.replace("order", "order!"))
    rows: list[dict] = []
    generate_examples(spec, fake_llm, _cfg(examples=3), on_rows=rows.extend)
    assert [r["drop_reason"] for r in rows[:2]] == [None, "duplicate"]


def test_max_calls_budget_stops_generation(spec, fake_llm, fake_chat):
    rows: list[dict] = []
    stats = generate_examples(spec, fake_llm, _cfg(examples=60, max_calls=5), on_rows=rows.extend)
    assert stats["stopped_by"] == "max_calls"
    assert stats["requests"] == 5
    assert len(fake_chat.history) == 5
    assert len(rows) == 5


def test_resume_continues_without_reusing_indexes(spec, fake_llm):
    first: list[dict] = []
    stats = generate_examples(
        spec, fake_llm, _cfg(examples=12, max_calls=5), on_rows=first.extend, run_id="r1"
    )
    assert stats["stopped_by"] == "max_calls"
    kept = [r for r in first if r["kept"]]
    counts = {label: sum(r["output"] == label for r in kept) for label in spec.labels}
    start = max(r["request_index"] for r in first) + 1
    second: list[dict] = []
    stats = generate_examples(
        spec,
        fake_llm,
        _cfg(examples=12),
        start_index=start,
        counts=counts,
        on_rows=second.extend,
        run_id="r1",
    )
    assert stats["stopped_by"] == "target"
    assert stats["usable"] == 12 - len(kept)
    indexes = [r["request_index"] for r in first + second]
    assert len(indexes) == len(set(indexes))
    assert min(r["request_index"] for r in second) == start
    assert Counter(r["output"] for r in first + second if r["kept"]) == {"billing": 4, "bug": 4, "other": 4}


def test_labels_already_full_are_skipped(spec, fake_llm):
    rows: list[dict] = []
    stats = generate_examples(
        spec, fake_llm, _cfg(examples=6), counts={"billing": 2, "bug": 2}, on_rows=rows.extend
    )
    assert {r["output"] for r in rows} == {"other"}
    assert stats["usable"] == 2


def test_rows_are_stored_in_batches_and_on_interrupt(spec, fake_llm, fake_chat):
    batches: list[list[dict]] = []
    calls = {"n": 0}

    def responder(messages, params):
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt
        return default_reply(messages, params)

    fake_chat.responder = responder
    with pytest.raises(KeyboardInterrupt):
        generate_examples(spec, fake_llm, _cfg(examples=60), on_rows=lambda rows: batches.append(list(rows)))
    assert [len(b) for b in batches] == [8, 2]  # a full batch, then what was answered before Ctrl-C
    assert [r["request_index"] for b in batches for r in b] == list(range(10))


def test_progress_counts_usable_examples(spec, fake_llm, fake_chat):
    class Bar:
        n = 0

        def update(self, k: int) -> None:
            self.n += k

    bar = Bar()
    fake_chat.enqueue("not json")
    generate_examples(spec, fake_llm, _cfg(examples=6), progress=bar)
    assert bar.n == 6


# curate --------------------------------------------------------------------------------------------

BILLING = [
    "My card was charged twice for one order.",
    "Where can I download last month's invoice?",
    "I want a refund for the annual subscription.",
    "Why did the price of my plan go up?",
    "The receipt shows the wrong billing address.",
    "Please cancel my payment plan and stop charging me.",
    "I was billed after cancelling my account.",
    "Can I pay by bank transfer instead of credit card?",
    "The discount code was not applied to my bill.",
    "How do I update the card used for payments?",
]
BUG = [
    "The app crashes when I press the save button.",
    "I get an error 500 when uploading a photo.",
    "The screen freezes after the latest update.",
    "Search results never load on the dashboard.",
]


def _rows(pairs: list[tuple[str, str]], **extra) -> list[dict]:
    return [
        {"id": i + 1, "input": x, "output": y, "kept": 1, "drop_reason": None, **extra}
        for i, (x, y) in enumerate(pairs)
    ]


@pytest.fixture
def two_labels() -> TaskSpec:
    return TaskSpec(instruction="Classify tickets as billing or bug.", labels=["billing", "bug"])


def _by_id(updates: list[dict]) -> dict[int, dict]:
    return {u["id"]: u for u in updates}


def test_curate_drops_near_duplicates(two_labels):
    pairs = [(x, "billing") for x in BILLING[:4]] + [(x, "bug") for x in BUG]
    pairs.insert(2, ("The refund for my invoice never arrived.", "billing"))
    pairs.append(("the refund for my invoice never arrived!", "billing"))
    rows = _rows(pairs)
    updates, report = curate(rows, two_labels, cv_filter=False, balance=10)
    u = _by_id(updates)
    assert u[len(rows)]["kept"] is False and u[len(rows)]["drop_reason"] == "near_duplicate"
    assert u[3]["kept"] is True  # the first of the pair stays
    assert report["dropped"] == {"near_duplicate": 1}
    assert report["kept"] == len(rows) - 1


def test_curate_balance_caps_the_larger_label(two_labels):
    rows = _rows([(x, "billing") for x in BILLING] + [(x, "bug") for x in BUG])
    updates, report = curate(rows, two_labels, cv_filter=False, outlier_z=100, balance=1.25)
    kept = Counter(r["output"] for r in rows if _by_id(updates)[r["id"]]["kept"])
    assert kept == {"billing": 5, "bug": 4}  # ceil(4 × 1.25)
    assert report["per_label"] == {"billing": 5, "bug": 4}
    assert report["dropped"] == {"balance": 5}
    assert report["kept"] == 9


def test_curate_keeps_generation_drop_reasons(two_labels):
    rows = _rows([(x, "billing") for x in BILLING[:3]] + [(x, "bug") for x in BUG[:3]])
    rows[0].update(kept=0, drop_reason="too_short", input="refund")
    rows[3].update(kept=0, drop_reason="talks_about_task")
    updates, report = curate(rows, two_labels, cv_filter=False, balance=10)
    u = _by_id(updates)
    assert (u[1]["kept"], u[1]["drop_reason"]) == (False, "too_short")
    assert (u[4]["kept"], u[4]["drop_reason"]) == (False, "talks_about_task")
    assert report["dropped"] == {"too_short": 1, "talks_about_task": 1}
    assert report["per_label"] == {"billing": 2, "bug": 2}


def test_curate_reconsiders_rows_dropped_by_an_earlier_curation(two_labels):
    rows = _rows([(x, "billing") for x in BILLING[:3]] + [(x, "bug") for x in BUG[:3]])
    rows[0].update(kept=0, drop_reason="balance")
    updates, _ = curate(rows, two_labels, cv_filter=False, balance=10)
    assert _by_id(updates)[1]["kept"] is True


def test_curate_splits_only_train_and_validation(two_labels):
    rows = _rows([(x, "billing") for x in BILLING] + [(x, "bug") for x in BUG])
    updates, _ = curate(rows, two_labels, cv_filter=False, outlier_z=100, balance=10, val_fraction=0.5)
    assert len(updates) == len(rows)
    splits = {u["split"] for u in updates if u["kept"]}
    assert splits == {"train", "validation"}
    assert all("split" not in u for u in updates if not u["kept"])
    assert all(u["quality"]["cv_confidence"] is None for u in updates)  # cv filter off
    again, _ = curate(rows, two_labels, cv_filter=False, outlier_z=100, balance=10, val_fraction=0.5)
    assert [u["split"] for u in again if u["kept"]] == [u["split"] for u in updates if u["kept"]]


def test_curate_report_is_json_serialisable(two_labels):
    rows = _rows([(x, "billing") for x in BILLING] + [(x, "bug") for x in BUG])
    updates, report = curate(rows, two_labels)
    json.dumps(report)
    assert set(report["diversity"]) == {"billing", "bug"}
    assert all(0 <= d <= 1 for d in report["diversity"].values())


def test_curate_of_nothing(two_labels):
    updates, report = curate([], two_labels)
    assert updates == [] and report["kept"] == 0


# diversity -----------------------------------------------------------------------------------------


def test_diversity_of_identical_vectors_is_zero():
    v = np.tile(np.array([[0.6, 0.8, 0.0]]), (5, 1))
    assert diversity(v) == pytest.approx(0.0, abs=1e-9)


def test_diversity_of_orthogonal_vectors_is_one():
    assert diversity(np.eye(4)) == pytest.approx(1.0)


@pytest.mark.parametrize("n", [0, 1])
def test_diversity_of_fewer_than_two_is_zero(n):
    assert diversity(np.ones((n, 3))) == 0.0
