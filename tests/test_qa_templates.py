"""Questions written by rule from the answer's sentence, and the QA generator's use of them."""

from __future__ import annotations

import json

import pytest

from p2m.tools import generate_seq as generate_seq_module
from p2m.tools.generate import GenConfig
from p2m.tools.generate_seq import generate_seq
from p2m.tools.parse import parse_task, qa_parts
from p2m.tools.qa_templates import lemma, object_spans, template_question, wh_word
from p2m.tools.seq_checks import answer_candidates, check_question, prose_only

BRIDGE = (
    "The Tamsin Bridge opened in 1932 after six years of work. It is 410 metres long and was designed by"
    " Ada Moreau. Trains crossed it until March 1971."
)
TOWN = (
    "The town of Oxley was founded in 1642 by a local farmer. Its market has 120 stalls and is run by Tom Smith."
    " In 1926, the museum was opened by King Olaf. It holds 4,000 paintings and attracts 2 million visitors."
)
VOLCANO = (
    "Mount Kela is a volcano in the north of Veria. It rises 2,310 metres above the sea and last erupted in"
    " 1881. Ada moved to Leeds in 1990 to study music."
)


@pytest.mark.parametrize(
    ("passage", "span", "question", "answer"),
    [
        (BRIDGE, "1932", "In what year did the Tamsin Bridge open after six years of work?", "1932"),
        (BRIDGE, "410 metres", "How long is it?", "410 metres"),
        (BRIDGE, "Ada Moreau", "Who designed it?", "Ada Moreau"),
        (BRIDGE, "March 1971", "When did Trains cross it?", "March 1971"),
        (BRIDGE, "The Tamsin Bridge", "What opened in 1932 after six years of work?", "The Tamsin Bridge"),
        (TOWN, "Oxley", "Which town was founded in 1642 by a local farmer?", "Oxley"),
        (TOWN, "a local farmer", "Who founded the town of Oxley in 1642?", "a local farmer"),
        (TOWN, "120 stalls", "How many stalls does its market have?", "120"),
        (TOWN, "Tom Smith", "Who is its market run by?", "Tom Smith"),
        (TOWN, "1926", "In what year was the museum opened by King Olaf?", "1926"),
        (TOWN, "King Olaf", "Who opened the museum in 1926?", "King Olaf"),
        (TOWN, "4,000", "How many paintings does it hold?", "4,000"),
        (TOWN, "2 million", "How many visitors does it attract?", "2 million"),
        (VOLCANO, "Veria", "Where is Mount Kela a volcano?", "Veria"),
        (VOLCANO, "2,310 metres", "How many metres does it rise above the sea?", "2,310 metres"),
        (VOLCANO, "1881", "In what year did it last erupt?", "1881"),
        (VOLCANO, "Leeds", "Where did Ada move in 1990 to study music?", "Leeds"),
    ],
)
def test_template_question_rewrites_the_answers_sentence(passage, span, question, answer):
    assert template_question(passage, span) == (question, answer)
    assert answer in passage and check_question(question, answer, passage) is None


def test_template_question_falls_back_to_the_sentence_without_the_span():
    passage = "Wild bees collect pollen from more than 300 kinds of plants. Most of them live alone."
    question, answer = template_question(passage, "300")
    assert question == "How many kinds of plants Wild bees collect pollen from?" and answer == "300"
    assert template_question(passage, "400") is None


def test_every_candidate_span_gets_a_question_that_passes_the_checks():
    for passage in (BRIDGE, TOWN, VOLCANO):
        for span in answer_candidates(passage, 8):
            question, answer = template_question(passage, span)
            assert check_question(question, answer, passage) is None, (span, question)


def test_object_spans_are_the_noun_phrases_after_main_verbs():
    passage = (
        "The canal was dug in 1801. It carried coal and wood to the port. Mount Kela is a volcano in the north."
        " The bridge has been used by boats since 1972. The hall is 40 metres long and holds a wooden organ."
    )
    spans = [s for _, s in object_spans(passage)]
    assert spans == ["coal", "a volcano", "a wooden organ"]
    # the rest of a coordinated object stays: clumsy, still answerable
    assert template_question(passage, "coal") == ("What did it carry and wood to the port?", "coal")
    assert template_question(passage, "a wooden organ") == ("What does the hall hold?", "a wooden organ")


def test_prose_only_drops_sentences_with_markup():
    assert (
        prose_only("It opened in 1926. See www.x.org for more. | a | b | It is long.") == "It opened in 1926."
    )


def test_wh_words_and_lemmas():
    assert wh_word("1990", "moved in ") == "In what year"
    assert wh_word("March 1971", "until ") == "When"
    assert wh_word("50 euros") == "How much"
    assert wh_word("12 %") == "What percentage"
    assert wh_word("Rosa Lind", "by ") == "Who"
    assert wh_word("Leeds", "moved to ") == "Where"
    assert wh_word("Golden Gate Bridge", "crossed the ") == "What"
    assert [lemma(w) for w in ("opened", "moved", "created", "stopped", "carried", "joined", "began", "has")] == [
        "open", "move", "create", "stop", "carry", "join", "begin", "have",
    ]  # fmt: skip


QA_PROMPT = (
    "Answer the question with a span of the passage.\n\nPassage: Ada moved to Leeds in 1990 to study"
    " music. She later taught there.\nQuestion: Where did Ada move?\nAnswer: Leeds"
)


def test_qa_unit_templates_the_spans_whose_teacher_question_fails(fake_llm, fake_chat, monkeypatch):
    monkeypatch.setattr(generate_seq_module, "QA_TEACHER_QUESTIONS", 2)
    real = fake_chat.responder

    def vague(messages, params):  # a teacher whose questions never pass check_question
        reply = real(messages, params)
        return json.dumps({"question": "What is it about?"}) if '"question"' in reply else reply

    fake_chat.responder = vague
    spec = parse_task(QA_PROMPT)
    rows: list[dict] = []
    stats = generate_seq(spec, fake_llm, GenConfig(examples=10, minutes=0), on_rows=rows.extend, run_id="t")
    kept = [r for r in rows if r["kept"]]
    assert stats["usable"] == len(kept) == 10
    assert all(r["quality"]["question_by"] == "template" for r in kept)
    assert {r["quality"]["teacher_drop"] for r in kept} <= {"question_not_grounded", "not_asked"}
    assert any(r["quality"]["teacher_question"] == "What is it about?" for r in kept)
    for r in kept:
        passage, question = qa_parts(r["input"])
        assert check_question(question, r["output"], passage) is None
        assert passage.find(r["output"]) == r["quality"]["answer_start"]
    assert len({r["request_index"] for r in rows}) == len(rows)


def test_qa_unit_asks_the_teacher_only_for_passages_by_default(fake_llm):
    rows: list[dict] = []
    stats = generate_seq(
        parse_task(QA_PROMPT), fake_llm, GenConfig(examples=12, minutes=0), on_rows=rows.extend
    )
    kept = [r for r in rows if r["kept"]]
    assert len(kept) == 12 and {r["quality"]["question_by"] for r in kept} == {"template"}
    assert stats["units"] == len({qa_parts(r["input"])[0] for r in rows}) < 12  # several rows per passage
    assert stats["requests"] <= stats["units"] + 1  # one passage call per unit (+ parsing the task)
