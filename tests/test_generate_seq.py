"""Generators for QA, code, data-to-text and text generation: each check, then whole runs on the fake teacher."""

from __future__ import annotations

import ast
import random
import re

import pytest

from p2m.errors import TaskError
from p2m.tools.generate import GenConfig
from p2m.tools.generate_seq import curate_seq, generate_seq, salvage
from p2m.tools.parse import parse_task, qa_parts
from p2m.tools.records import (
    adapt_demonstration,
    format_record,
    invent_names,
    like_values,
    name_like,
    sample_record,
    widen_names,
)
from p2m.tools.seq_checks import (
    answer_candidates,
    check_code,
    check_mentions,
    check_output,
    check_passage,
    check_question,
    clean_code,
    mentions,
    pick_code_line,
    repair_record,
)

PASSAGE = (
    "The Tamsin Bridge opened in 1932 after six years of work. It is 410 metres long and was designed by"
    " Ada Moreau. Trains crossed it until March 1971."
)
QA_PROMPT = (
    "Answer the question with a span of the passage.\n\nPassage: Ada moved to Leeds in 1990 to study music."
    " She later taught at the conservatory there for many years.\nQuestion: Where did Ada move?\nAnswer: Leeds"
)
CODE_PROMPT = "Write a one-line Python snippet for the request.\n\nRequest: square of 5\nCode: print(5 ** 2)"
D2T_PROMPT = (
    "Turn this restaurant record into one fluent sentence.\n\n"
    "Input: name[Blue Spice], eatType[pub], area[riverside]\nOutput: Blue Spice is a pub by the river.\n\n"
    "Input: name[Zizzi], food[Italian], familyFriendly[yes]\nOutput: Zizzi serves Italian food to families."
)
GEN_PROMPT = "Write a short reply to the message.\n\nMessage: see you at noon\nReply: noon works"


# QA checks -----------------------------------------------------------------------------------------


def test_passage_check():
    assert check_passage(PASSAGE) is None
    assert check_passage("One short sentence only.") == "too_short"
    assert check_passage(None) == "invalid_json"
    assert check_passage("Question: " + PASSAGE) == "talks_about_task"
    assert check_passage(PASSAGE + " Student ID: 5 | 2014 }") == "not_prose"
    german = (
        "Die alte Brücke wurde 1932 nach sechs Jahren Bauzeit eröffnet. Sie ist 410 Meter lang und wurde von"
    )
    german += " Ada Moreau entworfen. Züge fuhren bis März 1971 über sie, heute gehen nur Fußgänger dort."
    assert check_passage(german) == "not_english" and check_passage(german, language="de") is None


def test_answer_candidates_are_spans_spread_over_the_passage():
    spans = answer_candidates(PASSAGE, 3)
    assert len(spans) == 3 and all(s in PASSAGE for s in spans)
    assert "1932" in spans and "It" not in spans and "The" not in spans
    assert any("Moreau" in s or "March 1971" in s for s in spans)
    town = "The town was founded by a farmer. Each year the Mayor thanks the people of Oxley and the mayor sings."
    assert answer_candidates(town, 8) == ["a farmer", "Oxley"]  # "Mayor": also written "mayor"


@pytest.mark.parametrize(
    ("question", "answer", "reason"),
    [
        ("When did the Tamsin Bridge open?", "1932", None),
        ("When did the Tamsin Bridge open?", "1933", "answer_not_in_passage"),
        ("When did the bridge open in 1932?", "1932", "question_gives_answer"),
        ("Bridge opened", "1932", "not_a_question"),
        ("What colour is the sky today?", "1932", "question_not_grounded"),
        (None, "1932", "invalid_json"),
    ],
)
def test_question_check(question, answer, reason):
    assert check_question(question, answer, PASSAGE) == reason


# code checks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "ran"),
    [
        ("print(sum(range(1, 11)))", None, True),  # closed and safe: run
        ("ys = [x + 1 for x in xs]", None, False),  # free name xs: parsed, not run
        ("print(1 / 0)", "runtime_error", False),
        ("import os; print(os.getcwd())", None, False),  # unsafe module: not run
        ("print(open('f').read())", None, False),  # unsafe builtin: not run
        ("x = (1,", "does_not_parse", False),
        ("a = 1\nb = 2", "not_one_line", False),
        ("xs", "does_nothing", False),
        ("", "invalid_json", False),
    ],
)
def test_code_check(code, reason, ran):
    assert check_code(code) == (reason, ran)


def test_code_must_be_about_its_request():
    assert check_code("len(word)", "get the length of the string word", run=False) == (None, False)
    assert check_code("sorted(xs)", "sort the list xs", run=False) == (None, False)
    assert check_code("numbers = [1, 2]", "get the length of the string word", run=False)[0] == (
        "code_not_about_request"
    )


def test_code_check_allows_several_lines_when_asked_and_runs_until_timeout():
    assert check_code("a = 1\nb = a + 1", one_line=False) == (None, True)
    assert check_code("x = [i for i in iter(int, 1)]", run=False) == (None, False)


def test_pick_code_line_finds_the_one_liner_in_a_wordy_completion():
    wrapped = "```python\ndef get_length(d):\n    return len([w for w in d if w])  # count\nprint(get_length({}))\n```"
    assert pick_code_line(wrapped) == "len([w for w in d if w])"
    assert pick_code_line("Here you go:\nsorted(words, key=len)") == "sorted(words, key=len)"
    assert pick_code_line("x = s.count('#')  # hash signs") == "x = s.count('#')"
    assert pick_code_line("I think so.\nwords") is None


def test_clean_code_strips_fences_and_prefixes():
    assert clean_code("```python\nprint(1)\n```") == "print(1)"
    assert clean_code("Output: print(2)") == "print(2)"


# data-to-text checks -------------------------------------------------------------------------------


def test_mentions_plain_and_yes_no_values():
    assert mentions("A moderately priced pub.", "priceRange", "moderate")
    assert mentions("It is kid friendly.", "familyFriendly", "yes")
    assert not mentions("It is by the river.", "familyFriendly", "yes")
    assert mentions("Prices are £20-25.", "priceRange", "£20-25")


def test_mention_check_needs_every_value_and_no_other():
    record = [("name", "Blue Spice"), ("area", "riverside")]
    pools = {"name": ["Blue Spice", "Zizzi"], "area": ["riverside", "city centre"]}
    assert check_mentions("Blue Spice is in the riverside area.", record, pools) is None
    assert check_mentions("Blue Spice is a pub.", record, pools) == "misses_a_value"
    assert check_mentions("Blue Spice, riverside, near Zizzi.", record, pools) == "mentions_other_value"
    assert check_mentions("name[Blue Spice] riverside", record, pools) == "talks_about_task"
    assert check_mentions("Blue Spice; riverside; pub", record, pools) == "not_a_sentence"


def test_repair_keeps_the_record_the_text_describes():
    pools = {"name": ["Blue Spice", "Zizzi"], "eatType": ["pub", "coffee shop"], "food": ["Chinese", "Italian"],
             "familyFriendly": ["yes", "no"]}  # fmt: skip
    asked = [("name", "Blue Spice"), ("food", "Italian"), ("familyFriendly", "yes")]
    text = "Blue Spice is a Chinese coffee shop that is family friendly."
    fixed = repair_record(text, asked, pools, required="name")
    assert fixed == [
        ("name", "Blue Spice"),
        ("eatType", "coffee shop"),
        ("food", "Chinese"),
        ("familyFriendly", "yes"),
    ]
    assert check_mentions(text, fixed, pools) is None
    # polarity: "yes" is dropped when the text negates it; no subject field, no record
    assert ("familyFriendly", "yes") not in repair_record(
        "Blue Spice, a pub, is not family friendly.", asked, pools
    )
    assert repair_record("A Chinese pub.", asked, pools, required="name") is None


def test_output_check():
    assert check_output("noon works", "see you at noon", 10) is None
    assert check_output("see you at noon", "See you at noon!", 10) == "repeats_input"
    assert check_output("word " * 20, "x", 10) == "too_long"


def test_a_reply_cut_off_by_max_tokens_keeps_its_complete_sentences():
    assert salvage('{"passage": "The river is long. It has \\"two\\" dams. It floods ev', "passage") == (
        'The river is long. It has "two" dams.'
    )
    assert salvage('{"passage": "no sentence end', "passage") is None
    assert salvage('{"passage": "Line one.\nLine two. And', "passage") == "Line one.\nLine two."
    assert salvage("nothing", "passage") is None


def test_a_raw_newline_inside_the_json_string_is_accepted(fake_llm, fake_chat):
    from p2m.tools.generate_seq import _ask

    fake_chat.enqueue('{ "passage" : "First line.\nSecond line." } ')
    assert _ask(fake_llm, "s", "u", "passage", GenConfig(), 0, 50) == "First line.\nSecond line."


def test_names_are_widened_by_recombination_other_values_are_not():
    names = widen_names(["The Golden Palace", "Browns Cambridge", "Zizzi"])
    assert names[:3] == ["The Golden Palace", "Browns Cambridge", "Zizzi"]
    assert {"The Golden Cambridge", "Browns Palace", "Zizzi Palace"} <= set(names)
    assert widen_names(["riverside", "city centre"]) == ["riverside", "city centre"]
    assert widen_names(["English", "Chinese"]) == ["English", "Chinese"]
    many = [f"{a} {b}" for a, b in zip("Alder Birch Cedar Dover Elm Fern Gale Holm Ivy Jay".split(),
                                       "House Hall Inn Arms Barn Mill Yard Farm Court Lodge".split(), strict=True)]  # fmt: skip
    assert len(widen_names(many, cap=16)) == 16


def test_name_fields_get_invented_names_shaped_like_theirs():
    assert name_like(["The Golden Palace", "Zizzi"]) and name_like(["Bank of England"])
    assert not name_like(["English", "Chinese"])  # one word each: kinds of food, not names
    assert (
        not name_like(["Fast food", "English"])
        and not name_like(["city centre"])
        and not name_like(["3 out of 5"])
    )
    names = invent_names(
        ["The Golden Palace", "Crowne Plaza Hotel"], 20, random.Random(0), avoid={"riverside"}
    )
    assert len(names) == len(set(names)) == 20
    for n in names:
        words = n.split()
        assert len(words) == 3 and all(w[0].isupper() for w in words) and "Riverside" not in words
        assert not re.search(r"(?:ed|ing|ly|s)$", words[1].lower())
    assert sum(n.startswith("The ") for n in names) >= 5 and sum(n.endswith(" Hotel") for n in names) >= 2
    assert names == invent_names(
        ["The Golden Palace", "Crowne Plaza Hotel"], 20, random.Random(0), avoid={"riverside"}
    )
    widened = widen_names(["The Punter", "Browns Cambridge"], invent=8, rng=random.Random(1))
    assert len(widened) == 4 + 8  # two recombined ("The Cambridge", "Browns Punter"), eight invented
    assert widen_names(["riverside", "city centre"], invent=8) == ["riverside", "city centre"]


def test_records_follow_the_demonstrations_fields_and_style():
    fields, pools = ["name", "area"], {"name": ["A", "B"], "area": ["x", "y"]}
    rec = sample_record(fields, pools, {"name": 1.0, "area": 1.0}, random.Random(0))
    assert [f for f, _ in rec] == ["name", "area"]
    assert format_record([("name", "A"), ("area", "x")]) == "name[A], area[x]"
    assert format_record([("name", "A"), ("area", "x")], "colon") == "name: A, area: x"


# whole generators on the fake teacher --------------------------------------------------------------


def _gen(prompt: str, fake_llm, n: int = 12) -> tuple[list[dict], dict]:
    spec = parse_task(prompt)
    rows: list[dict] = []
    stats = generate_seq(spec, fake_llm, GenConfig(examples=n, minutes=0), on_rows=rows.extend, run_id="t")
    return rows, stats


def test_qa_generator_keeps_only_verified_spans(fake_llm):
    rows, stats = _gen(QA_PROMPT, fake_llm)
    kept = [r for r in rows if r["kept"]]
    assert stats["usable"] == len(kept) == 12
    for r in kept:
        passage, question = qa_parts(r["input"])
        assert r["output"] in passage and r["output"] not in question
        assert passage.find(r["output"]) == r["quality"]["answer_start"]
    assert len({r["request_index"] for r in rows}) == len(rows)


def test_qa_question_is_cut_after_its_question_mark(fake_llm, fake_chat):
    real = fake_chat.responder

    def chatty(messages, params):
        reply = real(messages, params)
        return reply.replace('?"}', '? }\\nOutput: 1932 and more"}') if '"question"' in reply else reply

    fake_chat.responder = chatty
    rows, _ = _gen(QA_PROMPT, fake_llm, n=3)
    assert [qa_parts(r["input"])[1][-1] for r in rows if r["kept"]] == ["?", "?", "?"]


def test_code_generator_keeps_parsing_snippets_and_runs_the_closed_ones(fake_llm):
    rows, stats = _gen(CODE_PROMPT, fake_llm)
    kept = [r for r in rows if r["kept"]]
    assert len(kept) == 12
    for r in kept:
        ast.parse(r["output"])
    assert any(r["quality"]["ran"] for r in kept) and not all(r["quality"]["ran"] for r in kept)
    assert stats["checks"]["kept"] == 12


def test_d2t_generator_samples_records_and_keeps_texts_that_mention_every_value(fake_llm):
    rows, stats = _gen(D2T_PROMPT, fake_llm)
    kept = [r for r in rows if r["kept"]]
    assert len(kept) == 12
    assert stats["proposed_values"] == {"food": 2, "eatType": 1, "area": 1}  # "fitness", "fees" dropped
    for r in kept:
        assert r["input"].startswith("name[") or "[" in r["input"]
        values = [v for v in r["input"].split("[")[1:]]
        assert all(v.split("]")[0] in r["output"] for v in values)


def test_d2t_generator_repairs_a_text_that_misses_a_value(fake_llm, fake_chat):
    real = fake_chat.responder

    def lossy(messages, params):  # drops the last value of every record
        reply = real(messages, params)
        return (
            reply.rsplit(",", 1)[0] + '."}'
            if "fluent sentence" in messages[-1][1] and "," in reply
            else reply
        )

    fake_chat.responder = lossy
    rows, stats = _gen(D2T_PROMPT, fake_llm, n=6)
    repaired = [r for r in rows if r["kept"] and r["quality"].get("repaired")]
    assert repaired and all(r["input"] != r["quality"]["asked"] for r in repaired)
    assert all(check_mentions(r["output"], [], {}) is None for r in repaired)


def test_d2t_keeps_the_first_sentence_when_it_says_it_all(fake_llm, fake_chat):
    real = fake_chat.responder

    def wordy(messages, params):
        reply = real(messages, params)
        return (
            reply.replace(".\nInput", ". It is nice there.\nInput")
            if "fluent sentence" in messages[-1][1]
            else reply
        )

    fake_chat.responder = wordy
    rows, _ = _gen(D2T_PROMPT, fake_llm, n=4)
    kept = [r for r in rows if r["kept"]]
    assert kept and all(r["output"].startswith("The place has") and "nice" not in r["output"] for r in kept)


def test_text_generation_generator(fake_llm):
    rows, _ = _gen(GEN_PROMPT, fake_llm, n=6)
    assert sum(r["kept"] for r in rows) == 6


def test_generation_is_reproducible_and_resumable(fake_llm):
    a, _ = _gen(CODE_PROMPT, fake_llm, n=6)
    b, _ = _gen(CODE_PROMPT, fake_llm, n=6)
    assert [(r["input"], r["output"]) for r in a] == [(r["input"], r["output"]) for r in b]
    spec = parse_task(CODE_PROMPT)
    more: list[dict] = []
    start = max(r["request_index"] for r in a) + 1
    generate_seq(
        spec, fake_llm, GenConfig(examples=8, minutes=0), start_index=start, have=6, on_rows=more.extend
    )
    assert sum(r["kept"] for r in more) == 2 and min(r["request_index"] for r in more) >= start


def test_duplicates_are_dropped(fake_llm, fake_chat):
    fake_chat.responder = lambda m, p: (
        '{"request": "print 4 squared"}' if "request" in str(p) else "print(4 ** 2)"
    )
    rows, stats = _gen(CODE_PROMPT, fake_llm, n=3)
    assert stats["usable"] == 1 and stats["checks"]["duplicate"] >= 1 and stats["stopped_by"] == "no_progress"
    assert sum(r["kept"] for r in rows) == 1


def test_d2t_without_records_is_refused(fake_llm):
    spec = parse_task("Turn this restaurant record into one fluent sentence.")
    with pytest.raises(TaskError, match="records"):
        generate_seq(spec, fake_llm, GenConfig(examples=4, minutes=0))


def test_curate_drops_near_duplicate_inputs(fake_llm):
    rows, _ = _gen(GEN_PROMPT, fake_llm, n=6)
    rows = [{**r, "id": i} for i, r in enumerate(rows)]
    rows.append({**rows[0], "id": 99, "input": rows[0]["input"] + " !"})  # the same after normalisation
    rows.append({**rows[1], "id": 98, "input": rows[1]["input"].replace("the ", "teh ", 1) + " ok"})
    updates, report = curate_seq(rows, parse_task(GEN_PROMPT), near_dup=0.9)
    by_id = {u["id"]: u for u in updates}
    assert by_id[99]["drop_reason"] == "duplicate"
    assert by_id[98]["drop_reason"] == "near_duplicate"
    assert report["kept"] == 6 and report["diversity_of"] == "inputs"


def test_curate_drops_duplicates_splits_qa_by_passage_and_reports_diversity(fake_llm):
    rows, _ = _gen(QA_PROMPT, fake_llm, n=24)
    for i, r in enumerate(rows):
        r["id"] = i
    rows.append({**rows[0], "id": 999})  # an exact repeat
    updates, report = curate_seq(rows, parse_task(QA_PROMPT))
    by_id = {u["id"]: u for u in updates}
    assert by_id[999]["drop_reason"] == "duplicate"
    assert report["kept"] == 24 and 0 < report["diversity"] < 1
    splits_of_passage: dict[str, set] = {}
    for r in rows[:-1]:
        if by_id[r["id"]]["kept"]:
            splits_of_passage.setdefault(qa_parts(r["input"])[0], set()).add(by_id[r["id"]]["split"])
    assert all(len(s) == 1 for s in splits_of_passage.values())
    assert {"train", "validation"} <= set().union(*splits_of_passage.values())


def test_a_demonstration_is_rewritten_with_the_requests_values():
    demo = ("name[Blue Spice], eatType[pub], area[riverside], familyFriendly[yes]",
            "Blue Spice is a family friendly pub by the Riverside.")  # fmt: skip
    record = [("name", "The Harbour Mill"), ("area", "city centre")]
    pools = {"eatType": ["restaurant"], "area": ["riverside", "city centre"]}
    inp, text = adapt_demonstration(*demo, record, pools, random.Random(0))
    assert inp == "name[The Harbour Mill], eatType[restaurant], area[city centre], familyFriendly[yes]"
    assert text == "The Harbour Mill is a family friendly restaurant by the city centre."
    # a value its text does not name stays as it is (the pair stays true); so does the colon style
    inp, text = adapt_demonstration("name: Zizzi, food: Italian", "Zizzi is nice.", [("food", "French")], {},
                                    random.Random(0), "colon")  # fmt: skip
    assert (inp, text) == ("name: Zizzi, food: Italian", "Zizzi is nice.")


def test_proposed_values_are_kept_only_when_they_resemble_the_examples():
    assert like_values(["French", "Japanese", "fitness", "love"], ["English", "Chinese"]) == [
        "French",
        "Japanese",
    ]
    assert like_values(["restaurant", "fees"], ["coffee shop"]) == ["restaurant"]
    assert like_values([], ["x"]) == [] and like_values(["x"], []) == []
