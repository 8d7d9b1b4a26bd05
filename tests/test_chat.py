"""Chat sessions on the scripted fake teacher: every refinement intent, version history, re-attaching, bad input."""

from __future__ import annotations

import json
import threading

import pytest

from p2m.agent.chat import MAX_MESSAGE, ChatSession
from p2m.agent.intents import parse_intent
from p2m.agent.options import RunOptions, open_store
from p2m.agent.refine import mentions
from p2m.tools.generate import GenConfig
from p2m.tools.llm import LLMClient
from p2m.tools.train import TrainConfig
from tests.fakes import FakeChatModel, default_reply

PROMPT = "Classify customer support tickets as billing, bug or other.\n\nInput: I was charged twice\nOutput: billing"


def _opts() -> RunOptions:
    return RunOptions(
        gen=GenConfig(examples=36, minutes=0), train=TrainConfig(epochs=1), finetune=False, retrieve=False
    )


def _asked(chat: FakeChatModel, since: int) -> list[str]:
    """The generation requests (user turns) the teacher got since request `since`."""
    return [h["messages"][-1][1] for h in chat.history[since:] if "Write a new" in h["messages"][-1][1]]


@pytest.mark.parametrize(
    "message,kind,args",
    [
        ("add a label refund", "add_label", {"label": "refund"}),
        ("Please add a new label called 'refund'.", "add_label", {"label": "refund"}),
        ("remove the label other", "remove_label", {"label": "other"}),
        ("the billing examples are too short", "length", {"label": "billing", "direction": "short"}),
        ("these examples are way too long", "length", {"label": None, "direction": "long"}),
        ("drop examples that mention prices", "drop_word", {"word": "prices"}),
        ("write them in Spanish", "language", {"language": "spanish"}),
        ("use a bigger model", "bigger_model", {}),
        ("stop and deploy", "deploy", {}),
        ("why did you do that?", "why", {}),
        ("here are two real examples:\nmy card was charged twice -> billing\nthe app crashes -> bug", "examples",
         {"pairs": [["my card was charged twice", "billing"], ["the app crashes", "bug"]]}),
        ("Input: refund me\nOutput: billing", "examples", {"pairs": [["refund me", "billing"]]}),
        ("labels: urgent, normal", "set_labels", {"labels": ["urgent", "normal"]}),
        ("retrain", "retrain", {}),
        ("history", "history", {}),
        ("go", "go", {}),
        ("what a lovely day", "unknown", {"text": "what a lovely day"}),
        # the kinds that write text: their outputs' length and style
        ("make the answers shorter", "length", {"label": None, "direction": "long"}),
        ("the descriptions are too short", "length", {"label": None, "direction": "short"}),
        ("longer outputs please", "length", {"label": None, "direction": "short"}),
        ("use a formal tone", "style", {"hint": "Use a formal tone."}),
        ("write them in a friendly, casual style", "style", {"hint": "Use a friendly, casual tone."}),
        ("style: one sentence, no jargon", "style", {"hint": "one sentence, no jargon"}),
        ("train longer", "bigger_model", {}),
        ("Passage: Bo lives in Rome. He cooks pasta there.\nQuestion: Where does Bo live?\nAnswer: Rome", "examples",
         {"pairs": [["Bo lives in Rome. He cooks pasta there.\nQuestion: Where does Bo live?", "Rome"]]}),
    ],
)  # fmt: skip
def test_command_like_messages_are_parsed_without_an_llm(message, kind, args) -> None:
    intent = parse_intent(message, has_task=True)
    assert (intent.kind, intent.args) == (kind, args)


def test_answers_to_a_clarifying_question_are_read_in_context() -> None:
    assert parse_intent("billing, bug or other", True, "labels").args == {
        "labels": ["billing", "bug", "other"]
    }
    assert parse_intent("a tweet", True, "input_kind").args == {"kind": "tweet"}
    assert parse_intent("go", True, "input_kind").kind == "go"
    assert parse_intent("anything at all", has_task=False).kind == "task"
    assert parse_intent("help", has_task=False).kind == "help"
    # examples answer the question for labels or for an example (not read as a label list)
    pasted = "Input: see you at noon\nOutput: noon works"
    assert parse_intent(pasted, True, "labels").args == {"pairs": [["see you at noon", "noon works"]]}
    assert parse_intent(pasted, True, "example").kind == "examples"


def test_a_session_refines_the_task_version_by_version(fake_llm, fake_chat) -> None:
    s = ChatSession(options=_opts(), llm=fake_llm)
    out = s.handle(PROMPT)
    text = "\n".join(out)
    assert "Task v1" in text and "billing, bug, other" in text
    assert "A sample of the new data" in text and "Version 1 trained" in text
    assert len(s.versions) == 1 and s.versions[0]["score"] > 0.5
    store, rid = open_store(), s.run_id
    before = {r["id"] for r in store.examples(rid, kept=True) if r["output"] != "refund"}

    # add a label: only the new label is generated, the others keep their examples
    n0 = len(fake_chat.history)
    out = s.handle("add a label refund")
    asked = _asked(fake_chat, n0)
    assert asked and all("Write a new refund" in a for a in asked)
    assert s.spec().labels == ["billing", "bug", "other", "refund"]
    kept = {r["id"] for r in store.examples(rid, kept=True)}
    assert len(before & kept) >= 0.8 * len(before)
    table = out[-1]
    assert "| | v1 | v2 | change |" in table and "F1 refund, teacher-written rows | — |" in table
    # both estimates, real rows first, each with its rows and interval
    assert table.index("real row") < table.index("teacher-written") and "90%: " in table

    # too short: that label's generated examples are dropped and regenerated with a hint
    old_billing = {
        r["id"]
        for r in store.examples(rid, kept=True, source_prefix="generated:")
        if r["output"] == "billing"
    }
    n0 = len(fake_chat.history)
    s.handle("the billing examples are too short")
    asked = _asked(fake_chat, n0)
    assert asked and all("Write a new billing" in a and "two or three full sentences" in a for a in asked)
    rows = {r["id"]: r for r in store.examples(rid, kept=None)}
    assert all(rows[i]["kept"] == 0 and rows[i]["drop_reason"] == "user: too short" for i in old_billing)

    # pasted real examples: known labels are added for training, unknown ones named
    out = s.handle("here are real examples:\nI want my money back -> refund\nthe app crashes at login -> bug\n"
                   "cancel my plan -> cancellation")  # fmt: skip
    assert any("cancellation" in o and "add a label cancellation" in o for o in out)
    users = store.examples(rid, kept=True, source_prefix="user:chat")
    assert sorted(r["output"] for r in users) == ["bug", "refund"] and all(
        r["split"] == "train" for r in users
    )

    # drop examples that mention a word
    s.handle("drop examples that mention invoices")
    assert not any("invoice" in r["input"].lower() for r in store.examples(rid, kept=True))
    assert any(r["drop_reason"] == "user: mentions 'invoices'" for r in store.examples(rid, kept=False))

    # another language: everything generated is set aside and rewritten, asking for that language
    n0 = len(fake_chat.history)
    s.handle("write them in Spanish")
    assert s.spec().language == "es"
    asked_sys = [h["messages"][0][1] for h in fake_chat.history[n0:] if "Write a new" in h["messages"][-1][1]]
    assert asked_sys and all("Write every input in Spanish." in a for a in asked_sys)
    assert {r["output"] for r in store.examples(rid, kept=True, source_prefix="generated:")} == set(
        s.spec().labels
    )

    # a bigger model: the fine-tuned student is trained too
    s.handle("use a bigger model")
    assert s.options.finetune and any(e["name"].endswith("-finetune") for e in store.experiments(rid))

    out = s.handle("why did you do that?")
    assert "select" in out[-1] and "best validation score" in out[-1]

    out = s.handle("stop and deploy")
    assert (
        "Deployed version" in out[-1] and (s.folder / "model").is_dir() and (s.folder / "README.md").is_file()
    )

    # the version history: one task version per change, each trained version with its metric
    out = s.handle("history")
    notes = [v["note"] for v in s.versions]
    assert len(s.versions) == 7 and notes[1] == "added refund"
    assert out[-1].count("\n| v") == 7
    versions = [store.task_version(rid, v)[0] for v in range(1, 8)]
    assert versions == list(range(1, 8))
    report = json.loads((s.folder / "report.json").read_text())
    assert report["version"] == 7 and report["task"]["language"] == "es"


def test_a_new_process_reattaches_to_the_session(fake_llm) -> None:
    s = ChatSession(options=_opts(), llm=fake_llm)
    s.handle(PROMPT)
    s.handle("remove the label other")
    again = ChatSession.attach(s.run_id, llm=fake_llm)
    assert [m["content"] for m in again.messages()] == [m["content"] for m in s.messages()]
    assert again.versions == s.versions and again.spec().labels == ["billing", "bug"]
    out = again.handle("history")
    assert "| v2 | removed other |" in out[-1]
    with pytest.raises(Exception, match="no session"):
        ChatSession.attach("nope")


def test_clarifying_questions_only_where_the_spec_is_ambiguous(fake_llm) -> None:
    s = ChatSession(options=_opts(), llm=fake_llm)
    out = s.handle("Sort what people send us by how urgent it is.")
    assert "Which labels" in out[-1] and not s.versions
    out = s.handle("urgent, normal")
    assert "What is one input" in out[-1] and not s.versions
    out = s.handle("an email")
    assert s.spec().input_kind == "email" and "Version 3 trained" in out[-1]
    assert [v[0] for v in [open_store().task_version(s.run_id, i) for i in (1, 2, 3)]] == [1, 2, 3]


def test_the_language_is_asked_when_the_examples_are_not_english(fake_llm, fake_chat) -> None:
    s = ChatSession(options=_opts(), llm=fake_llm)
    out = s.handle("Classify tweets as positive or negative.\nInput: me encanta este producto, es el mejor de la"
                   " tienda\nOutput: positive\nInput: es una porquería de la peor calidad que he comprado\nOutput: negative")  # fmt: skip
    assert "Which language" in out[-1] and not s.versions
    out = s.handle("spanish please")
    assert s.spec().language == "es" and "Version 2 trained" in out[-1]
    asked = [h["messages"][0][1] for h in fake_chat.history if "Write a new" in h["messages"][-1][1]]
    assert asked and all("Write every input in Spanish." in a for a in asked)
    s2 = ChatSession(options=_opts(), llm=fake_llm)
    assert "Version 1 trained" in s2.handle(PROMPT)[-1]  # English: no question


def test_bad_input_gets_a_clear_reply_and_nothing_is_lost(fake_llm, tmp_path) -> None:
    s = ChatSession(options=_opts(), llm=fake_llm)
    assert "empty" in s.handle("   ")[0]
    assert "Error:" in s.handle("hi")[0] and s.run_id is None  # no task in it: nothing is recorded as a run
    s.handle(PROMPT)
    said = [m["content"] for m in s.messages()]
    assert said[1] == "hi" and said[2].startswith("Error:") and said[3] == PROMPT  # kept from before the task
    huge = "x" * (MAX_MESSAGE + 1)
    assert "at most" in s.handle(huge)[0]
    weird = "<script>alert(1)</script> ünïcødé 🎉 -> billing"
    s.handle(weird)
    assert weird in [m["content"] for m in s.messages()]  # stored verbatim; the UI renders it as text
    assert any(r["input"] == "<script>alert(1)</script> ünïcødé 🎉" for r in open_store().examples(s.run_id))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a"}\nnot json\n')
    out = s.handle("", files=[str(bad)])
    assert out[-1].startswith("Error: bad.jsonl line 1")
    good = tmp_path / "good.csv"
    good.write_text("input,output\nmy payment failed,billing\nscreen goes black,bug\n")
    out = s.handle("", files=[str(good)])
    assert any("Added 2 real examples" in o for o in out)
    # a second tab on the same session while it works: a clear reply, the message kept
    s._busy.acquire()
    try:
        out = s.handle("add a label refund")
    finally:
        s._busy.release()
    assert "still working" in out[0] and "add a label refund" in [m["content"] for m in s.messages()]
    assert "refund" not in s.spec().labels


def test_free_text_goes_to_a_capable_llm() -> None:
    chat = FakeChatModel()
    llm = LLMClient(chat, "fake-strong", "json_schema", capable=True)

    def responder(messages, params):
        if "You are p2m" in messages[0][1]:
            msg = json.loads(messages[-1][1])["message"]
            if "money back" in msg:
                return json.dumps({"intent": "add_label", "label": "refund"})
            return json.dumps({"intent": "chat", "reply": "Billing covers charges and invoices."})
        return default_reply(messages, params)

    chat.responder = responder
    s = ChatSession(options=_opts(), llm=llm)
    s.handle(PROMPT)
    out = s.handle("what does billing cover?")
    assert out == ["Billing covers charges and invoices."]
    s.handle("people who want their money back should get their own class")
    assert "refund" in s.spec().labels
    decision = [d for d in open_store().decisions(s.run_id) if d["action"] == "refine_task"][-1]
    assert decision["by"] == "llm" and decision["args"]["intent"] == "add_label"


def test_two_threads_on_one_session_do_not_interleave(fake_llm) -> None:
    s = ChatSession(options=_opts(), llm=fake_llm)
    s.handle(PROMPT)
    replies: list[list[str]] = []
    threads = [threading.Thread(target=lambda: replies.append(s.handle("retrain"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    busy = [r for r in replies if "still working" in r[0]]
    assert len(s.versions) + len(busy) == 3


@pytest.mark.slow
def test_the_embedded_teacher_session_handles_the_common_intents() -> None:
    """With the real 135M teacher: the task, a new label and a dropped word, read by the parser alone."""
    opts = RunOptions(gen=GenConfig(examples=12, minutes=3), train=TrainConfig(epochs=1), finetune=False,
                      retrieve=False)  # fmt: skip
    s = ChatSession(options=opts)
    try:
        s.handle(PROMPT)
        assert s.versions and s.spec().labels == ["billing", "bug", "other"]
        s.handle("add a label refund")
        assert s.spec().labels[-1] == "refund" and len(s.versions) == 2
        s.handle("drop examples that mention charged")
        assert not any(mentions(r["input"], "charged") for r in open_store().examples(s.run_id, kept=True)
                       if r["source"] != "prompt")  # fmt: skip
        assert open_store().ledger(s.run_id)["calls"] > 0
    finally:
        s.close()


def test_a_capable_llm_reads_a_style_wish() -> None:
    from p2m.agent.intents import llm_intent

    chat = FakeChatModel()
    chat.enqueue(
        json.dumps({"intent": "style", "hint": "Write like a friendly waiter."}),
        json.dumps({"intent": "style"}),
    )
    llm = LLMClient(chat, "fake-strong", "json_schema", capable=True)
    intent = llm_intent(
        llm, "could the texts sound like a friendly waiter wrote them?", {"task_type": "data_to_text"}
    )
    assert (intent.kind, intent.args, intent.by) == (
        "style",
        {"hint": "Write like a friendly waiter."},
        "llm",
    )
    assert llm_intent(llm, "something", {}) is None  # a style without a hint is no intent
    assert "data-to-text" in chat.history[0]["messages"][0][1]  # the LLM is told every task kind
