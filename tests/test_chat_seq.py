"""Chat about tasks that write their output — extractive QA and data-to-text — on the scripted fake teacher.

The sequence students are replaced by the memorising stand-in of tests/test_pipeline_seq.py (the real
ones are tested in tests/test_train_seq.py); everything else is the real engine: generation with the
user's hints, curation, the user's rows held out as real validation rows, both estimates, deploy.
"""

from __future__ import annotations

import json

import pytest

from p2m.agent.chat import ChatSession
from p2m.agent.options import RunOptions, open_store
from p2m.agent.refine import mentions
from p2m.tools.generate import GenConfig
from p2m.tools.parse import qa_parts
from p2m.tools.train import TrainConfig
from tests.test_generate_seq import CODE_PROMPT, D2T_PROMPT, QA_PROMPT
from tests.test_pipeline_seq import MemoStudent, _load

QA_EXAMPLES = """Here are real examples:

Passage: The Orin Dam was finished in 1958 by the state of Vela. It holds 40 million litres of water.
Question: When was the Orin Dam finished?
Answer: 1958

Passage: Mara Quist painted the harbour murals of Tell in 1921. She later moved to Oslo to teach.
Question: Where did Mara Quist move?
Answer: Oslo

Passage: The Ferrow line opened in 1887 and carried coal from Dunmere to the coast for ninety years.
Question: What did the Ferrow line carry?
Answer: coal"""


@pytest.fixture
def memo(monkeypatch) -> dict[str, list]:
    import p2m.tools.train_seq as ts

    seen: dict[str, list] = {}

    def gen(train, val, instruction, cfg, progress=False):
        seen.setdefault("gen", []).append(train)
        return MemoStudent("causal-lm", dict(train))

    def qa(train, val, cfg, progress=False):
        seen.setdefault("qa", []).append(train)
        return MemoStudent("extractive-qa", dict(train))

    monkeypatch.setattr(ts, "finetune_generator", gen)
    monkeypatch.setattr(ts, "finetune_qa", qa)
    monkeypatch.setattr(ts, "load_seq_student", _load)
    return seen


def _opts(n: int = 16) -> RunOptions:
    return RunOptions(gen=GenConfig(examples=n, minutes=0), train=TrainConfig(epochs=1), retrieve=False)


def _output_requests(chat, since: int) -> list[str]:
    """The requests since `since` that asked the teacher to write an output ('Input: … Output:')."""
    return [
        h["messages"][-1][1]
        for h in chat.history[since:]
        if h["messages"][-1][1].rstrip().endswith("Output:")
    ]


def _real_first(text: str) -> bool:
    return "real row" in text and text.index("real row") < text.index("teacher-written row")


def test_a_qa_task_is_refined_by_conversation(fake_llm, fake_chat, memo) -> None:
    s = ChatSession(options=_opts(), llm=fake_llm)
    out = s.handle(QA_PROMPT)
    text = "\n".join(out)
    assert (
        "Task v1: extractive QA" in text and "SQuAD F1" in text and "Version 1 trained (v1-qa-reader)" in text
    )
    assert "A sample of the new data" in text and " → " in text
    v1 = s.versions[0]
    assert v1["metric"] == "squad_f1" and v1["real"]["rows"] == 1 and v1["teacher"]["rows"] >= 1
    assert _real_first(out[-1]) and "SQuAD F1, real rows (1; 90%: " in out[-1]
    store, rid = open_store(), s.run_id

    # shorter answers: spans are picked from the passage, so longer answers are dropped and kept out
    out = s.handle("make the answers shorter")
    bound = s.state["bounds"]["max_words"]
    assert any(f"answers of at most {bound} word" in o for o in out) and "Version 2 trained" in out[-1]
    generated = store.examples(rid, kept=True, source_prefix="generated:")
    assert generated and all(len(r["output"].split()) <= bound for r in generated)
    assert any(r["drop_reason"] == "user: answer too long" for r in store.examples(rid, kept=False))
    # a style does not apply to copied spans: said, nothing trained
    out = s.handle("use a formal tone")
    assert "spans copied from the passage" in out[-1] and len(s.versions) == 2

    # real examples: every third is held out as a real validation row, and said so
    out = s.handle(QA_EXAMPLES)
    assert any("I keep 1 of them to check the model on" in o for o in out)
    users = store.examples(rid, kept=True, source_prefix="user:chat")
    assert sorted(r["split"] for r in users) == ["train", "train", "validation"]
    assert all(qa_parts(r["input"]) and r["output"] in qa_parts(r["input"])[0] for r in users)
    v3 = s.versions[-1]
    assert v3["real"]["rows"] == 2 and v3["n_real"] == 2  # the prompt's demonstration and the held-out row
    assert "real validation rows | 1 | 2 | +1 |" in out[-1] and "The real rows changed from 1 to 2" in out[-1]
    held = next(r["input"] for r in users if r["split"] == "validation")
    assert all(held not in dict(t) for t in memo["qa"][-1:])  # never trained on

    # an answer that is not in its passage is refused, with the reason
    out = s.handle(
        "Passage: Tom lives in Leeds and works in a mill.\nQuestion: Where does Tom live?\nAnswer: York"
    )
    assert "copied from the passage" in out[0] and len(s.versions) == 3

    out = s.handle("retrain")
    assert "Version 4 trained" in out[-1] and "| | v3 | v4 | change |" in out[-1]
    out = s.handle("why did you do that?")
    assert "select" in out[-1] and "real" in out[-1]
    out = s.handle("history")
    assert out[-1].count("\n| v") == 4 and "SQuAD F1" in out[-1]
    assert out[-1].index("on real rows") < out[-1].index("on teacher-written rows")

    out = s.handle("stop and deploy")
    assert "Deployed version 4: SQuAD F1" in out[-1] and (s.folder / "model" / "p2m_seq.json").is_file()
    report = json.loads((s.folder / "report.json").read_text())
    assert report["version"] == 4 and report["task"]["task_type"] == "extractive_qa"
    assert report["estimates"]["real"]["rows"] == 2 and report["estimates"]["teacher"]["rows"] >= 1
    assert (s.folder / "versions.png").is_file()


def test_a_data_to_text_task_is_refined_by_conversation(fake_llm, fake_chat, memo, tmp_path) -> None:
    s = ChatSession(options=_opts(), llm=fake_llm)
    out = s.handle(D2T_PROMPT)
    assert "Task v1: data to text" in out[0] and "Version 1 trained (v1-lora)" in out[-1]
    assert _real_first(out[-1]) and "chrF++, real rows (2; 90%: " in out[-1]
    store, rid = open_store(), s.run_id
    first = {r["id"] for r in store.examples(rid, kept=True, source_prefix="generated:")}

    # a style: every generated text is set aside and rewritten, the teacher told how
    n0 = len(fake_chat.history)
    out = s.handle("use a formal tone")
    asked = _output_requests(fake_chat, n0)
    assert asked and all("Use a formal tone." in a for a in asked)
    assert "Version 2 trained" in out[-1] and not first & {r["id"] for r in store.examples(rid, kept=True)}
    assert any(r["drop_reason"] == "user: style changed" for r in store.examples(rid, kept=False))

    # shorter outputs: the longest are dropped; new ones are asked for shorter text, the style kept
    n0 = len(fake_chat.history)
    out = s.handle("make the descriptions shorter")
    asked = _output_requests(fake_chat, n0)
    assert asked and all("Keep the output short" in a and "Use a formal tone." in a for a in asked)
    assert "Version 3 trained" in out[-1]

    # an upload of real examples: one in three is held out to check the model on
    path = tmp_path / "mine.jsonl"
    rows = [("name[Cotto], food[Thai], area[riverside]", "Cotto serves Thai food by the river."),
            ("name[Loch Fyne], eatType[pub]", "Loch Fyne is a pub."),
            ("name[Wildwood], food[French], familyFriendly[no]", "Wildwood serves French food, not for families."),
            ("name[Strada], area[city centre]", "Strada is in the city centre.")]  # fmt: skip
    path.write_text("\n".join(json.dumps({"input": x, "output": y}) for x, y in rows))
    out = s.handle("", files=[str(path)])
    assert any(
        "Added 4 real examples (user:mine.jsonl): 3 to train on, and I keep 1 of them" in o for o in out
    )
    assert s.versions[-1]["real"]["rows"] == 3  # two demonstrations and the held-out row

    # dropping a word looks at the texts too
    out = s.handle("drop examples that mention riverside")
    kept = [r for r in store.examples(rid, kept=True) if r["source"] != "prompt"]
    assert not any(mentions(r["input"], "riverside") or mentions(r["output"], "riverside") for r in kept)

    # another language: the teacher is told, everything generated is rewritten
    n0 = len(fake_chat.history)
    out = s.handle("write in Spanish")
    assert s.spec().language == "es" and s.spec().instruction.endswith("Write every text in Spanish.")
    asked = _output_requests(fake_chat, n0)
    assert asked and all("Write every text in Spanish." in a for a in asked)

    out = s.handle("retrain")
    table = out[-1]
    assert "| | v6 | v7 | change |" in table and table.index("chrF++, real rows") < table.index(
        "chrF++, teacher"
    )
    assert "F1" not in table.replace("chrF++", "")  # no per-label rows for a task without labels
    out = s.handle("stop and deploy")
    assert "Deployed version 7: chrF++" in out[-1] and _real_first(out[-1])
    assert [v["version"] for v in s.versions] == [1, 2, 3, 4, 5, 6, 7]
    assert all(v["metric"] == "chrf" and v["real"]["rows"] >= 2 for v in s.versions)


def test_a_code_task_takes_a_length_wish_and_examples(fake_llm, fake_chat, memo) -> None:
    s = ChatSession(options=_opts(), llm=fake_llm)
    out = s.handle(CODE_PROMPT)
    assert "Task v1: text to Python code" in out[0] and "Version 1 trained (v1-lora): chrF++" in out[-1]
    n0 = len(fake_chat.history)
    out = s.handle("make the snippets shorter")
    asked = _output_requests(fake_chat, n0)
    assert asked and all("Keep the output short" in a for a in asked) and "Version 2 trained" in out[-1]
    out = s.handle("double every number in xs -> ys = [2 * x for x in xs]\nprint hello -> print('hello')\n"
                   "sum of xs -> total = sum(xs)")  # fmt: skip
    assert any("I keep 1 of them to check the model on" in o for o in out)
    assert s.versions[-1]["real"]["rows"] == 2 and _real_first(out[-1])


def test_examples_are_asked_for_only_where_the_task_needs_them(fake_llm, memo) -> None:
    s = ChatSession(options=_opts(), llm=fake_llm)
    out = s.handle("Write a short product description from the product record.")
    assert "example record" in out[-1] and not s.versions
    out = s.handle("go")  # data-to-text cannot start without a record to learn the fields from
    assert "example record" in out[-1] and not s.versions
    out = s.handle("name[Kettle], colour[red], price[20 euros] -> A red kettle for 20 euros.\n"
                   "name[Lamp], colour[white], price[35 euros] -> A white lamp for 35 euros.")  # fmt: skip
    assert any("I use your 2 examples" in o for o in out) and "Version 2 trained" in out[-1]
    assert len(s.spec().demonstrations) == 2 and s.versions[0]["real"]["rows"] == 2


def test_a_reading_that_cannot_tell_the_type_is_asked_and_examples_answer_it(fake_llm, memo) -> None:
    s = ChatSession(options=_opts(), llm=fake_llm)
    out = s.handle("Sort what people send us by how urgent it is.")
    assert "Which labels" in out[-1] and "write text instead" in out[-1]
    out = s.handle("Input: see you at noon\nOutput: noon works for me, see you there\n\n"
                   "Input: can we move the call?\nOutput: sure, what time suits you?")  # fmt: skip
    assert s.spec().task_type == "text_generation" and len(s.spec().demonstrations) == 2
    assert "Version 2 trained" in out[-1] and "chrF++" in out[-1]
    # asked for labels, answered with labelled examples: a classifier with those labels
    s = ChatSession(options=_opts(24), llm=fake_llm)
    s.handle("Sort what people send us by how urgent it is.")
    out = s.handle("the server is down and nobody can log in -> urgent\nwhat is on the lunch menu -> normal")
    assert s.spec().task_type == "classification" and s.spec().labels == ["urgent", "normal"]
    assert "Version 2 trained" in out[-1] and "accuracy" in out[-1]
    # …or told to go: a text generator, without a second question
    s = ChatSession(options=_opts(), llm=fake_llm)
    s.handle("Sort what people send us by how urgent it is.")
    out = s.handle("go")
    assert s.spec().task_type == "text_generation" and "Version 1 trained" in out[-1]
