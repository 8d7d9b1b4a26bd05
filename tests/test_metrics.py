"""Generation and QA metrics against values computed by hand, and the per-example error listings."""

from __future__ import annotations

import json

import pytest

from p2m.errors import DataError
from p2m.tools.evaluate import (
    chrf,
    exact_match,
    generation_report,
    load_jsonl_refs,
    qa_report,
    rouge_l,
    seq_report,
    squad_em_f1,
    squad_normalize,
)


def test_squad_normalisation_drops_case_punctuation_and_articles():
    assert squad_normalize("The  Eiffel Tower!") == "eiffel tower"
    assert squad_normalize("an apple, a pear") == "apple pear"


def test_squad_em_and_f1_by_hand():
    # 1: exact after normalisation. 2: tokens {tower, in, paris} vs {eiffel, tower}: P 1/3, R 1/2, F1 0.4.
    # 3: best of two references ("1932" is exact). 4: nothing shared.
    preds = ["the Eiffel Tower", "tower in Paris", "1932", "blue"]
    refs = [["Eiffel Tower!"], ["Eiffel Tower"], ["in 1931", "1932"], ["red"]]
    em, f1 = squad_em_f1(preds, refs)
    assert em == pytest.approx(2 / 4)
    assert f1 == pytest.approx((1 + 0.4 + 1 + 0) / 4)


def test_chrf_sentence_by_hand():
    # "ab" vs "abc": char 1-grams P 1 R 2/3, char 2-grams P 1 R 1/2, word 1-grams P 0 R 0 (higher orders
    # have no hypothesis n-grams). Averages P 2/3, R 7/18; F(beta=2) = 5PR/(4P+R) = 630/1485.
    assert chrf(["ab"], [["abc"]]) == pytest.approx(100 * 630 / 1485)


def test_chrf_corpus_sums_statistics_and_takes_several_references():
    # corpus stats: char1 4/4 hyp, 4/5 ref; char2 2/2, 2/3; word1 1/2, 1/2 → P 5/6, R 59/90.
    p, r = 5 / 6, (0.8 + 2 / 3 + 0.5) / 3
    want = 100 * 5 * p * r / (4 * p + r)
    assert chrf(["ab", "xy"], [["abc"], ["zz", "xy"]]) == pytest.approx(want)
    assert chrf(["same text"], [["same text"]]) == pytest.approx(100.0)


def test_rouge_l_by_hand_takes_the_best_reference():
    # "the cat sat" vs "the cat sat on the mat": LCS 3, P 1, R 1/2, F 2/3; vs "a cat sat": LCS 2, F 2/3.
    assert rouge_l(["the cat sat"], [["the cat sat on the mat"]]) == pytest.approx(2 / 3)
    assert rouge_l(["the cat sat", "x y"], [["dog", "the cat sat"], ["z"]]) == pytest.approx(0.5)


def test_exact_match_ignores_surrounding_and_repeated_spaces_only():
    assert exact_match([" x = 1 ", "print(a)", "Y"], [["x  =  1"], ["print(b)", "print(a)"], ["y"]]) == 2 / 3


def test_qa_report_lists_wrong_answers_lowest_f1_first():
    rep = qa_report(
        ["tower in Paris", "1932", "blue"], [["Eiffel Tower"], ["1932"], ["red"]], ["q1", "q2", "q3"]
    )
    assert rep.metric == "squad_f1" and rep.n == 3
    assert rep.score == pytest.approx(round(1.4 / 3, 4))
    assert rep.scores["squad_em"] == pytest.approx(round(1 / 3, 4))
    assert [e["input"] for e in rep.errors] == ["q3", "q1"]
    assert rep.errors[0] == {"input": "q3", "expected": "red", "predicted": "blue", "f1": 0.0}


def test_generation_report_scores_and_worst_examples_first():
    preds, refs = ["ab", "same text"], [["abc"], ["same text"]]
    rep = generation_report(preds, refs, ["i1", "i2"], metric="chrf")
    assert rep.metric == "chrf" and rep.score == rep.scores["chrf"]
    assert set(rep.scores) == {"chrf", "rouge_l", "exact_match"}
    assert rep.scores["exact_match"] == 0.5
    assert [e["input"] for e in rep.errors] == ["i1"]  # a perfect example is not an error
    assert rep.errors[0]["chrf"] == pytest.approx(round(100 * 630 / 1485, 2))
    assert generation_report(preds, refs, metric="rouge_l").score == rep.scores["rouge_l"]
    with pytest.raises(DataError, match="unknown generation metric"):
        generation_report(preds, refs, metric="bleu")


def test_seq_report_dispatches_on_the_metric():
    assert seq_report("squad_f1", ["a b"], [["a b"]]).scores["squad_em"] == 1.0
    assert seq_report("squad_em", ["a"], [["b"]]).metric == "squad_em"
    assert seq_report("chrf", ["a b"], [["a b"]]).score == pytest.approx(100.0)


def test_load_jsonl_refs_keeps_every_reference(tmp_path):
    path = tmp_path / "test.jsonl"
    rows = [{"input": "r1", "output": ["one", "two"]}, {"input": "r2", "output": "three"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert load_jsonl_refs(path) == [("r1", ["one", "two"]), ("r2", ["three"])]
    path.write_text(json.dumps({"input": "r", "output": ["ok", 3]}))
    with pytest.raises(DataError, match="list of strings"):
        load_jsonl_refs(path)
