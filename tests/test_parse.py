"""Prompt → TaskSpec: the bench prompts, demonstration formats, label lists, LLM hints and refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from p2m.errors import TaskError
from p2m.tools.parse import (
    code_language,
    find_label_lists,
    parse_task,
    qa_input,
    qa_parts,
    record_fields,
    split_demonstrations,
)

# ../shared beside the checkout (as in CI); P2M_SHARED overrides it
BENCH = Path(os.environ.get("P2M_SHARED") or Path(__file__).resolve().parents[2] / "shared") / "bench-data"
needs_bench = pytest.mark.skipif(not BENCH.is_dir(), reason="bench data not present")


def _bench_prompt(name: str) -> str:
    return json.loads((BENCH / name / "task.json").read_text())["prompt"]


def _hint(fake_chat, labels: list[str], task_type: str = "classification") -> None:
    fake_chat.enqueue(json.dumps({"task_type": task_type, "labels": labels}))


# bench prompts -------------------------------------------------------------------------------------


@needs_bench
def test_sst2_prompt():
    spec = parse_task(_bench_prompt("sst2"))
    assert spec.task_type == "classification"
    assert spec.metric == "accuracy"
    assert sorted(spec.labels) == ["negative", "positive"]
    assert spec.input_kind == "movie review sentence"
    assert spec.demonstrations == [
        ("pays off and is effective if you stick with it", "positive"),
        ("end up trying to drown yourself in a lake afterwards", "negative"),
        ("decided lack of spontaneity in its execution and a dearth of real poignancy", "negative"),
    ]
    assert spec.instruction.startswith("Decide whether the sentiment")
    assert "Input:" not in spec.instruction and "pays off" not in spec.instruction


@needs_bench
def test_ag_news_prompt_labels_and_demonstrations():
    spec = parse_task(_bench_prompt("ag_news"))
    assert spec.task_type == "classification"
    assert spec.labels == ["world", "sports", "business", "technology"]
    assert [o for _, o in spec.demonstrations] == ["world", "technology", "business"]
    assert spec.demonstrations[0][0].startswith("Emergency defers Maldives debate.")
    assert spec.instruction.startswith("Classify this news article by topic")


@needs_bench
def test_ag_news_input_kind_has_no_determiner():
    # The kind is used verbatim in generation requests ("Write a new sports news article."),
    # so a leading "this"/"each"/"the" makes them ungrammatical.
    assert parse_task(_bench_prompt("ag_news")).input_kind == "news article"


@needs_bench
def test_e2e_prompt_is_data_to_text_without_labels():
    spec = parse_task(_bench_prompt("e2e_nlg"))
    assert spec.task_type == "data_to_text"
    assert spec.labels == []
    assert spec.metric == "chrf"
    assert len(spec.demonstrations) == 3
    assert spec.demonstrations[1][0].startswith("name[The Punter]")


# demonstration formats -----------------------------------------------------------------------------


def test_arrow_demonstrations_with_repeated_outputs_give_labels():
    spec = parse_task("Sort these reviews.\nloved it -> positive\nhated it -> negative\nso dull -> negative")
    assert spec.demonstrations == [
        ("loved it", "positive"),
        ("hated it", "negative"),
        ("so dull", "negative"),
    ]
    assert spec.labels == ["positive", "negative"]
    assert spec.task_type == "classification"
    assert spec.instruction == "Sort these reviews."


def test_arrow_demonstrations_strip_quotes_and_accept_unicode_arrow():
    _, demos = split_demonstrations('"great film" → positive\n"awful film" => negative')
    assert demos == [("great film", "positive"), ("awful film", "negative")]


def test_instruction_after_the_demonstrations_is_kept():
    spec = parse_task("loved it -> positive\nhated it -> negative\nso dull -> negative\nLabel movie reviews.")
    assert "Label movie reviews." in spec.instruction
    assert "->" not in spec.instruction


def test_examples_header_is_dropped_from_instruction():
    instruction, demos = split_demonstrations(
        "Classify tickets as billing or bug.\nExamples:\nInput: charged twice\nOutput: billing"
    )
    assert instruction == "Classify tickets as billing or bug."
    assert demos == [("charged twice", "billing")]


def test_labels_from_repeated_demo_outputs():
    spec = parse_task(
        "Tag the request.\nInput: reset my password\nOutput: account\n"
        "Input: where is my order\nOutput: shipping\nInput: change my email\nOutput: account"
    )
    assert spec.task_type == "classification"
    assert spec.labels == ["account", "shipping"]


def test_distinct_short_demo_outputs_are_not_taken_as_labels():
    spec = parse_task("Translate English to French.\nInput: hello\nOutput: bonjour\nInput: cat\nOutput: chat")
    assert spec.labels == []
    assert spec.task_type != "classification"


# label lists ---------------------------------------------------------------------------------------


def test_quoted_label_list_keeps_multiword_labels():
    spec = parse_task('Label each email as "spam" or "not spam".')
    assert spec.labels == ["spam", "not spam"]
    assert spec.task_type == "classification"


def test_quoted_list_of_three():
    assert find_label_lists('Tag it with one of "urgent", "normal" or "low priority".')[0] == [
        "urgent",
        "normal",
        "low priority",
    ]


def test_prose_label_list_after_trigger():
    spec = parse_task("Classify customer support tickets as billing, bug or other.")
    assert spec.labels == ["billing", "bug", "other"]
    assert spec.input_kind == "customer support ticket"


def test_demo_labels_take_the_prose_spelling():
    spec = parse_task(
        'Classify each ticket as "Billing", "Bug" or "Other".\nInput: charged twice\nOutput: billing'
    )
    assert spec.labels == ["Billing", "Bug", "Other"]
    assert spec.demonstrations == [("charged twice", "Billing")]


# LLM hints -----------------------------------------------------------------------------------------

URGENCY = "Tag each message by urgency: urgent messages need a reply today, normal ones can wait."


def test_llm_labels_accepted_when_they_occur_in_the_prompt(fake_llm, fake_chat):
    _hint(fake_chat, ["urgent", "normal"])
    spec = parse_task(URGENCY, fake_llm)
    assert spec.task_type == "classification"
    assert spec.labels == ["urgent", "normal"]
    call = fake_chat.history[-1]
    assert call["params"]["temperature"] == 0
    assert "labels" in call["params"]["response_format"]["schema"]["properties"]


def test_llm_labels_rejected_when_not_in_the_prompt(fake_llm, fake_chat):
    _hint(fake_chat, ["joy", "anger"])
    spec = parse_task("Classify the tweet by its emotion.", fake_llm)
    assert spec.labels == []
    assert spec.task_type != "classification"


def test_llm_labels_rejected_when_only_one_is_grounded(fake_llm, fake_chat):
    _hint(fake_chat, ["urgent", "spam"])
    assert parse_task(URGENCY, fake_llm).labels == []


def test_llm_non_json_answer_is_ignored(fake_llm, fake_chat):
    fake_chat.enqueue("I think it is classification")
    spec = parse_task(URGENCY, fake_llm)
    assert spec.labels == []
    assert len(fake_chat.history) == 1


def test_llm_does_not_override_prose_labels(fake_llm, fake_chat):
    _hint(fake_chat, ["toxic", "you"])
    spec = parse_task("Classify each comment as toxic or fine.\nInput: you suck\nOutput: toxic", fake_llm)
    assert spec.labels == ["toxic", "fine"]


def test_llm_task_type_fills_a_gap(fake_llm, fake_chat):
    _hint(fake_chat, [], task_type="text_to_code")
    assert parse_task("Turn each request into something useful.", fake_llm).task_type == "text_to_code"


# refusals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   \n\t "])
def test_empty_prompt_raises_task_error(prompt):
    with pytest.raises(TaskError, match="prompt is empty") as err:
        parse_task(prompt)
    assert "Classify" in str(err.value)  # shows an example of a good prompt


def test_none_prompt_raises_task_error():
    with pytest.raises(TaskError, match="prompt is empty"):
        parse_task(None)  # type: ignore[arg-type]


def test_greeting_is_not_a_task():
    with pytest.raises(TaskError, match="could not find a task") as err:
        parse_task("hello there")
    assert "Input:" in str(err.value) and "labels" in str(err.value)


# task types ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "task_type", "metric"),
    [
        ("Given a passage and a question, answer the question with a span from the passage.", "extractive_qa", "squad_f1"),
        ("Read the context paragraph and answer the question using a span of the context.", "extractive_qa", "squad_f1"),
        ("Write Python code for the described function.", "text_to_code", "chrf"),
        ("Write a one-line Python snippet for the request.", "text_to_code", "chrf"),
        ("Answer the question from the passage.", "extractive_qa", "squad_f1"),
        ("Turn this restaurant record into one fluent sentence.", "data_to_text", "chrf"),
        ("Turn the table record into a sentence describing it.", "data_to_text", "chrf"),
        ("Write a haiku about the sea.", "text_generation", "chrf"),
    ],
)  # fmt: skip
def test_task_type_detection(prompt, task_type, metric):
    spec = parse_task(prompt)
    assert spec.task_type == task_type
    assert spec.metric == metric
    assert spec.labels == []


def test_text_to_code_keeps_demonstrations():
    spec = parse_task("Write Python code for the request.\nRequest: sum of a list xs\nCode: total = sum(xs)")
    assert spec.task_type == "text_to_code"
    assert spec.demonstrations == [("sum of a list xs", "total = sum(xs)")]


def test_qa_demonstrations_are_read_and_put_in_the_qa_format():
    prompt = (
        "Answer the question with a span of the passage.\n\n"
        "Passage: The bridge opened in 1932 after six years of work.\nQuestion: When did the bridge open?\nAnswer: 1932\n\n"
        "Context: Ada moved to Leeds to study music.\nQuestion: What did Ada study?\nAnswer: music"
    )
    spec = parse_task(prompt)
    assert spec.task_type == "extractive_qa" and spec.metric == "squad_f1"
    assert spec.demonstrations == [
        (qa_input("The bridge opened in 1932 after six years of work.", "When did the bridge open?"), "1932"),
        (qa_input("Ada moved to Leeds to study music.", "What did Ada study?"), "music"),
    ]
    assert qa_parts(spec.demonstrations[1][0]) == (
        "Ada moved to Leeds to study music.",
        "What did Ada study?",
    )


def test_demonstrations_alone_give_the_task_type():
    qa = "Do this.\nPassage: Tom has a red bike and a blue car.\nQuestion: What colour is the car?\nAnswer: blue"
    assert parse_task(qa).task_type == "extractive_qa"
    d2t = "Describe it.\nInput: name[Zizzi], area[riverside]\nOutput: Zizzi is by the river."
    assert parse_task(d2t).task_type == "data_to_text"


def test_record_fields_of_both_record_styles():
    assert record_fields("name[Blue Spice], eatType[coffee shop]") == [
        ("name", "Blue Spice"),
        ("eatType", "coffee shop"),
    ]
    assert record_fields("city: Oslo, population: 700000") == [("city", "Oslo"), ("population", "700000")]
    assert record_fields("just a sentence") == []


# bad inputs: one readable line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        "Answer trivia questions about world history.",
        "Answer the question from the passage.\nQuestion: Who wrote Hamlet?\nAnswer: Shakespeare",
    ],
)
def test_qa_prompt_without_passages_is_refused(prompt):
    with pytest.raises(TaskError, match="passage") as err:
        parse_task(prompt)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("prompt", "lang"),
    [
        ("Convert the question into an SQL query.\nQuestion: how many users\nSQL: SELECT COUNT(*) FROM users", "SQL"),
        ("Write a JavaScript function for the request.", "JavaScript"),
        ("Write a bash one-liner for the request.", "bash"),
        ("Write code for the request.\nRequest: list files\nCode: ls -la | grep foo && echo ok", "other than Python"),
    ],
)  # fmt: skip
def test_code_in_another_language_is_refused(prompt, lang):
    with pytest.raises(TaskError, match="Python code only") as err:
        parse_task(prompt)
    assert lang in str(err.value) and "\n" not in str(err.value)


def test_python_prompt_naming_another_language_in_passing_is_accepted():
    assert code_language("Write Python that prints an HTML table") is None
    assert parse_task("Write a Python snippet that builds the SQL string.").task_type == "text_to_code"


def test_labels_glossed_in_parentheses_are_read_without_the_glosses():
    # the glosses hold lists of their own ("a count, date, size, amount or other quantity"): the first
    # reading of TREC's prompt took the last gloss for the label set
    shots = (
        "\n\nInput: How tall is the Eiffel Tower?\nOutput: number\n\nInput: Who wrote Hamlet?\nOutput: person"
    )
    spec = parse_task(
        "Classify each question by the kind of answer it asks for: description (a definition, reason or manner),"
        " person (a person or group of people), or number (a count, date, size, amount or other quantity)."
        + shots
    )
    assert spec.labels == ["description", "person", "number"]
    assert parse_task(
        "Sort each ticket into billing (payments, refunds or invoices), bug (a crash) or other."
    ).labels == [
        "billing",
        "bug",
        "other",
    ]
    assert parse_task("Classify the review as positive or negative (ignore neutral ones).").labels == [
        "positive",
        "negative",
    ]
