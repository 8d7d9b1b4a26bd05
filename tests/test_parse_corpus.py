"""Prompt reading over a corpus of prompts written as users write them, and the teacher's part in it.

tests/data/parse_corpus.jsonl is the development set (the rules were written against it); every prompt in it
must read right deterministically. tests/data/parse_corpus_heldout.jsonl was written after the rules were
frozen and never tuned on: its test only guards against a collapse (bench/RESULTS.md has its number).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from p2m.agent.cli_parse import load_corpus, score_readings
from p2m.errors import TaskError
from p2m.tools.parse import parse_task, read_task
from p2m.tools.types import TASK_TYPES

DATA = Path(__file__).parent / "data"
DEV = load_corpus(DATA / "parse_corpus.jsonl")
HELD_OUT = load_corpus(DATA / "parse_corpus_heldout.jsonl")


def _id(row: dict) -> str:
    return " ".join(row["prompt"].split())[:60]


def _hint(fake_chat, labels: list[str], task_type: str = "classification") -> None:
    fake_chat.enqueue(json.dumps({"task_type": task_type, "labels": labels}))


# the corpus ----------------------------------------------------------------------------------------


def test_corpus_covers_every_task_type_and_refusals():
    counts = collections.Counter(r["task_type"] for r in DEV if not r.get("refuse"))
    assert len(DEV) >= 80
    assert all(counts[t] >= 12 for t in TASK_TYPES), counts
    assert sum(1 for r in DEV if r.get("refuse")) >= 4
    assert any("\r\n" in r["prompt"] for r in DEV)  # Windows line endings
    assert all("note" in r for r in DEV + HELD_OUT)
    assert not {r["prompt"] for r in DEV} & {r["prompt"] for r in HELD_OUT}


@pytest.mark.parametrize("row", DEV, ids=_id)
def test_development_prompt_reads_right_without_the_teacher(row):
    if row.get("refuse"):
        with pytest.raises(TaskError) as err:
            parse_task(row["prompt"])
        assert "\n" not in str(err.value)
        return
    spec = parse_task(row["prompt"])
    assert spec.task_type == row["task_type"], row["note"]
    assert {x.lower() for x in spec.labels} == {x.lower() for x in row["labels"]}, row["note"]
    assert spec.metric == ("accuracy" if spec.task_type == "classification" else spec.metric)


def test_development_set_accuracy_is_perfect():
    res = score_readings(DEV)
    assert res["full"] is None
    assert res["deterministic"]["both"] == res["n"] == len(DEV)
    assert res["deterministic"]["teacher_asked"] == 0


def test_held_out_set_reads_mostly_right():
    res = score_readings(HELD_OUT)
    assert res["deterministic"]["both"] / res["n"] >= 0.7  # measured, not tuned: see bench/RESULTS.md


def test_every_sure_reading_of_the_development_set_leaves_the_teacher_alone(fake_llm, fake_chat):
    sure = [r for r in DEV if not r.get("refuse")][:20]
    for row in sure:
        assert read_task(row["prompt"], fake_llm).teacher is None
    assert fake_chat.history == []


# the phrasings that used to be misread ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "labels"),
    [
        ("Pick one of: urgent, normal, low for each incoming message.", ["urgent", "normal", "low"]),
        ("Route the request to a team.\nTeams:\n- sales\n- support\n- legal", ["sales", "support", "legal"]),
        ("Is the sentence about food? Answer yes or no.\nInput: I ate pasta\nOutput: yes\nInput: It rained\nOutput: no",
         ["yes", "no"]),
        ("Classify each question by the kind of answer it needs: a person, a place, a date.", ["person", "place", "date"]),
        ("Sort the notes.\nbuy milk => errand\ncall mum => family\nfix the sink => errand", ["errand", "family"]),
        ("Rate each answer on a scale of 1 to 3.", ["1", "2", "3"]),
    ],
)  # fmt: skip
def test_common_classification_shapes(prompt, labels):
    spec = parse_task(prompt)
    assert spec.task_type == "classification"
    assert spec.labels == labels


def test_question_classification_is_not_extractive_qa():
    reading = read_task("Classify user questions by what answer they need: refund, repair or advice.")
    assert reading.spec.task_type == "classification"
    assert reading.unsure == []
    assert "classification cue" in reading.why


def test_reading_explains_itself():
    reading = read_task("Label: positive / negative\nSay which one fits the review.")
    assert reading.spec.labels == ["positive", "negative"]
    assert "'Label:'" in reading.why


# the teacher ---------------------------------------------------------------------------------------


def test_unsure_reading_asks_the_teacher_once_and_takes_grounded_labels(fake_llm, fake_chat):
    _hint(fake_chat, ["Summer", "winter", "autumn leaves"])
    reading = read_task("Group the photo captions by season, summer versus winter.", fake_llm)
    assert len(fake_chat.history) == 1
    assert reading.unsure and reading.teacher is not None
    assert reading.spec.task_type == "classification"
    assert reading.spec.labels == ["summer", "winter"]  # spelled as in the prompt; ungrounded one dropped
    assert reading.teacher_used == ["labels", "task type"]


def test_teacher_type_fills_a_fallback_reading(fake_llm, fake_chat):
    _hint(fake_chat, [], task_type="data_to_text")
    reading = read_task("Map every item the way the team likes.", fake_llm)
    assert reading.spec.task_type == "data_to_text"
    assert "the teacher read it as data_to_text" in reading.why


def test_the_teacher_alone_does_not_make_a_task(fake_llm, fake_chat):
    _hint(fake_chat, [], task_type="text_generation")
    with pytest.raises(TaskError, match="could not find a task"):
        read_task("hi, how are you?", fake_llm)
    assert len(fake_chat.history) == 1


def test_question_and_answer_demonstrations_without_passages_stay_refused(fake_llm, fake_chat):
    _hint(fake_chat, [], task_type="text_generation")
    with pytest.raises(TaskError, match="examples have no passage"):
        read_task("Answer the question.\nQuestion: Who wrote Emma?\nAnswer: Jane Austen", fake_llm)


def test_teacher_type_without_support_in_the_prompt_is_ignored(fake_llm, fake_chat):
    _hint(fake_chat, [], task_type="text_generation")
    with pytest.raises(
        TaskError, match=r"read as extractive QA \(.*question.*\) but the prompt has no passages"
    ):
        read_task("Answer trivia questions about world history.", fake_llm)
    assert len(fake_chat.history) == 1  # asked before refusing


def test_teacher_cannot_override_demonstrations(fake_llm, fake_chat):
    _hint(fake_chat, [], task_type="text_to_code")
    prompt = "Do this.\nPassage: Ann keeps three goats on the hill farm.\nQuestion: What does Ann keep?\nAnswer: three goats"
    assert read_task(prompt, fake_llm).spec.task_type == "extractive_qa"


def test_labels_the_demonstrations_contradict_make_the_reading_unsure(fake_llm, fake_chat):
    _hint(fake_chat, ["spam", "ham", "promo"])
    prompt = "Classify the SMS as spam or ham.\nInput: 50% off today\nOutput: promo\nInput: hi mum\nOutput: ham\n" \
             "Input: sale sale\nOutput: promo"  # fmt: skip
    reading = read_task(prompt, fake_llm)
    assert any("not in the" in u for u in reading.unsure)
    assert {x.lower() for x in reading.spec.labels} == {"spam", "ham", "promo"}
