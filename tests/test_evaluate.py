"""Metrics against hand-computed values, and the JSONL loader's failures."""

from __future__ import annotations

import json

import pytest

from p2m.errors import DataError
from p2m.tools.evaluate import classification_report, load_jsonl_pairs

LABELS = ["a", "b", "c"]
TRUE = ["a", "a", "b", "b", "c"]
PRED = ["a", "b", "b", "b", "a"]
INPUTS = ["x0", "x1", "x2", "x3", "x4"]


def test_classification_report_by_hand():
    # a: TP 1, FP 1, FN 1 → P .5 R .5 F .5 | b: TP 2, FP 1 → P 2/3 R 1 F .8 | c: TP 0 → 0
    rep = classification_report(TRUE, PRED, LABELS, INPUTS)
    assert rep.metric == "accuracy"
    assert rep.n == 5
    assert rep.score == 0.6
    assert rep.scores["accuracy"] == 0.6
    assert rep.scores["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3, abs=1e-4)
    assert rep.per_label["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert rep.per_label["b"] == {
        "precision": pytest.approx(2 / 3, abs=1e-4),
        "recall": 1.0,
        "f1": 0.8,
        "support": 2,
    }
    assert rep.per_label["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert rep.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # rows expected, columns predicted
    assert rep.labels == LABELS
    assert rep.errors == [
        {"input": "x1", "expected": "a", "predicted": "b"},
        {"input": "x4", "expected": "c", "predicted": "a"},
    ]
    json.dumps(rep.to_dict())


def test_perfect_predictions():
    rep = classification_report(TRUE, TRUE, LABELS)
    assert rep.score == 1.0 and rep.scores["macro_f1"] == 1.0
    assert rep.errors == []
    assert rep.confusion == [[2, 0, 0], [0, 2, 0], [0, 0, 1]]


def test_prediction_outside_the_labels_counts_as_wrong():
    rep = classification_report(["a", "b"], ["a", "zzz"], ["a", "b"], ["x", "y"])
    assert rep.score == 0.5
    assert rep.per_label["b"]["recall"] == 0.0
    assert rep.confusion == [[1, 0], [0, 0]]
    assert rep.errors == [{"input": "y", "expected": "b", "predicted": "zzz"}]


def test_errors_are_capped_and_inputs_optional():
    rep = classification_report(["a"] * 10, ["b"] * 10, ["a", "b"], max_errors=3)
    assert len(rep.errors) == 3
    assert rep.errors[0] == {"input": "", "expected": "a", "predicted": "b"}


def test_empty_report():
    rep = classification_report([], [], ["a", "b"])
    assert (rep.n, rep.score, rep.labels) == (0, 0.0, ["a", "b"])


def test_length_mismatch_is_a_bug_not_a_score():
    with pytest.raises(ValueError):
        classification_report(["a", "b"], ["a"], ["a", "b"])


# load_jsonl_pairs ----------------------------------------------------------------------------------


def _write(tmp_path, text: str, name: str = "eval.jsonl"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_pairs_skipping_blank_lines(tmp_path):
    path = _write(
        tmp_path,
        '{"input": "great", "output": "positive"}\n\n  \n{"input": "bad", "output": ["negative", "neg"]}\n',
    )
    assert load_jsonl_pairs(path, ["positive", "negative"]) == [("great", "positive"), ("bad", "negative")]
    assert load_jsonl_pairs(str(path)) == [("great", "positive"), ("bad", "negative")]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file") as err:
        load_jsonl_pairs(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in str(err.value) and '"input"' in str(err.value)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataError, match="a folder, not a file"):
        load_jsonl_pairs(tmp_path)


def test_invalid_json_line_names_file_and_line(tmp_path):
    path = _write(tmp_path, '{"input": "a", "output": "x"}\n{"input": "b", "output": \n')
    with pytest.raises(DataError, match="not valid JSON") as err:
        load_jsonl_pairs(path)
    assert f"{path}:2:" in str(err.value)


def test_line_numbers_count_blank_lines(tmp_path):
    path = _write(tmp_path, '{"input": "a", "output": "x"}\n\nnot json\n')
    with pytest.raises(DataError, match=r":3: not valid JSON"):
        load_jsonl_pairs(path)


@pytest.mark.parametrize("line", ['{"input": "a"}', '{"output": "x"}', '["a", "x"]', '"just a string"', "42"])
def test_missing_field(tmp_path, line):
    path = _write(tmp_path, line + "\n")
    with pytest.raises(DataError, match=r':1: each line needs an "input" and an "output"'):
        load_jsonl_pairs(path)


@pytest.mark.parametrize(
    "line", ['{"input": 1, "output": "x"}', '{"input": "a", "output": 3}', '{"input": "a", "output": []}']
)
def test_non_string_fields(tmp_path, line):
    with pytest.raises(DataError, match="must be strings"):
        load_jsonl_pairs(_write(tmp_path, line))


def test_label_not_in_task(tmp_path):
    path = _write(tmp_path, '{"input": "a", "output": "positive"}\n{"input": "b", "output": "meh"}\n')
    with pytest.raises(DataError, match=r":2: output 'meh' is not one of the task's labels") as err:
        load_jsonl_pairs(path, ["positive", "negative"])
    assert "negative" in str(err.value)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file(tmp_path, text):
    with pytest.raises(DataError, match="holds no examples"):
        load_jsonl_pairs(_write(tmp_path, text))


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"input": "café", "output": "x"}'.encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        load_jsonl_pairs(path)
