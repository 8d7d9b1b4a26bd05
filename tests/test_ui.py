"""The web app's pure conversions and its session manager (background work, re-attach), without a browser."""

from __future__ import annotations

import threading
import time

import pytest

from p2m.agent.options import RunOptions
from p2m.agent.ui import SessionManager, chat_view, data_rows, history_rows, parse_ids, status_view
from p2m.errors import ConfigError
from p2m.tools.generate import GenConfig
from p2m.tools.train import TrainConfig
from tests.test_chat import PROMPT

LEDGER = {"calls": 3, "cached": 1, "prompt_tokens": 10, "completion_tokens": 5, "seconds": 2.0}
VERSION = {"version": 1, "note": "first version", "metric": "accuracy", "score": 0.9, "macro_f1": 0.8, "n_train": 30,
           "real": {"source": "real", "metric": "accuracy", "score": 0.75, "rows": 4, "low": 0.41, "high": 0.93},
           "teacher": {"source": "teacher", "metric": "accuracy", "score": 0.9, "rows": 60, "low": 0.82, "high": 0.95}}  # fmt: skip
SEQ_VERSION = {"version": 2, "note": "shorter answers", "metric": "squad_f1", "score": 0.8, "macro_f1": None,
               "n_train": 20, "per_label": {},
               "real": {"source": "real", "metric": "squad_f1", "score": 0.5, "rows": 3, "low": 0.2, "high": 0.8},
               "teacher": {"source": "teacher", "metric": "squad_f1", "score": 0.8, "rows": 12, "low": 0.7,
                           "high": 0.9}}  # fmt: skip


def test_messages_are_escaped_so_markup_shows_as_text() -> None:
    view = chat_view([{"role": "user", "content": '<img src=x onerror="alert(1)"> & <script>x()</script>'},
                      {"role": "assistant", "content": "| a | b |"}])  # fmt: skip
    assert view[0] == {
        "role": "user",
        "content": '&lt;img src=x onerror="alert(1)"> & &lt;script>x()&lt;/script>',
    }
    assert view[1] == {"role": "assistant", "content": "| a | b |"}  # markdown tables still render


def test_status_shows_stage_progress_metric_and_cost() -> None:
    assert status_view(None, LEDGER, [], False)[0].startswith("No task yet")
    run = {"id": "r1", "status": "running", "stage": "train", "error": None}
    text, frac = status_view(run, LEDGER, [], True, "version 2 (added refund)")
    assert (
        "working on version 2" in text
        and "stage **train**" in text
        and "3 LLM calls (1 cached), 15 tokens" in text
    )
    assert 0.4 < frac < 0.8
    gen = {**run, "stage": "generate"}
    text, frac = status_view(gen, LEDGER, [], True, "version 1", generated=(15, 30))
    assert "(15/30 examples)" in text and frac == pytest.approx(0.125)
    done = {"id": "r1", "status": "failed", "stage": "curate", "error": "too few <examples>"}
    text, frac = status_view(done, LEDGER, [VERSION], False)
    assert frac == 1.0 and "too few &lt;examples&gt;" in text
    # both estimates, real rows first, each with its rows and 90% interval
    assert (
        "v1 — accuracy **0.750** on 4 real rows (90%: 0.410–0.930); accuracy **0.900** on 60 teacher-written"
        in text
    )
    # no real rows yet: said so, and the teacher-written number says what it is on
    text, _ = status_view(done, LEDGER, [{**VERSION, "real": None}], False)
    assert "no real rows yet" in text and "**0.900** on 60 teacher-written rows" in text
    # a task that writes text: its own metric and scale
    text, _ = status_view(done, LEDGER, [SEQ_VERSION], False)
    assert (
        "SQuAD F1 **0.500** on 3 real rows" in text
        and "SQuAD F1 **0.800** on 12 teacher-written rows" in text
    )


def test_version_table_history_and_plot_lead_with_real_rows(tmp_path) -> None:
    from p2m.agent.versions import VERSION_HEADERS, compare, history_table, version_cells, write_version_plot

    assert VERSION_HEADERS.index("real rows") < VERSION_HEADERS.index("teacher-written rows")
    assert version_cells(SEQ_VERSION) == ["v2", "shorter answers", "SQuAD F1", "0.500 (3 rows; 90%: 0.200–0.800)",
                                          "0.800 (12 rows; 90%: 0.700–0.900)", 20]  # fmt: skip
    table = compare(None, SEQ_VERSION)
    assert table.index("SQuAD F1, real rows (3; 90%: 0.200–0.800)") < table.index("SQuAD F1, teacher-written")
    assert "F1 " not in table.replace("SQuAD F1", "")  # no per-label rows without labels
    chrf = {**SEQ_VERSION, "teacher": {**SEQ_VERSION["teacher"], "metric": "chrf", "score": 45.25}}
    assert "chrF++ 45.2 (12 rows" in history_table([chrf])
    assert write_version_plot([VERSION, {**VERSION, "version": 2}], tmp_path / "v.png").stat().st_size > 0


def test_data_rows_newest_first_with_provenance() -> None:
    rows = [{"id": i, "output": "bug", "source": "generated:r", "split": "train", "kept": i % 2, "drop_reason":
             None if i % 2 else "near_duplicate", "input": f"text {i}"} for i in range(3)]  # fmt: skip
    table = data_rows(rows)
    assert (
        [r[0] for r in table] == [2, 1, 0]
        and table[0][3:5] == ["no", "near_duplicate"]
        and table[0][2] == "text 2"
    )


def test_parse_ids() -> None:
    assert parse_ids("12, 15 20") == [12, 15, 20]
    with pytest.raises(ConfigError, match="not x"):
        parse_ids("12 x")
    with pytest.raises(ConfigError):
        parse_ids("  ")


def test_manager_works_in_the_background_and_a_new_page_reattaches(fake_llm) -> None:
    opts = RunOptions(gen=GenConfig(examples=30, minutes=0), train=TrainConfig(epochs=1), finetune=False,
                      retrieve=False)  # fmt: skip
    m = SessionManager(opts, llm=fake_llm)
    draft = m.get(None, "page-1")
    m.submit(draft, PROMPT)
    deadline = time.time() + 120
    while (draft.busy or not draft.versions) and time.time() < deadline:
        time.sleep(0.2)
    assert draft.versions and m.promote("page-1") == draft.run_id and m.last == draft.run_id
    assert draft.generated() is None  # not working: no progress to show
    with draft._busy:
        done, want = draft.generated()
    assert want == 30 and 20 <= done <= 40  # the first version's examples, counted from its first request
    workers = [t for t in threading.enumerate() if t.name == "p2m-chat"]
    # the session's worker outlives the message, and so does the teacher it started
    assert len(workers) == 1 and workers[0].is_alive()
    m.submit(draft, "add a label refund")
    while (draft.busy or len(draft.versions) < 2) and time.time() < deadline:
        time.sleep(0.2)
    assert len(draft.versions) == 2 and [t for t in threading.enumerate() if t.name == "p2m-chat"] == workers
    # another server process (a restart) re-attaches from the store
    other = SessionManager(opts, llm=fake_llm)
    again = other.get(draft.run_id)
    assert again.versions == draft.versions and len(again.messages()) == len(draft.messages())
    assert other.session_ids() == [draft.run_id]
    rows = history_rows(other.store, other.session_ids())
    assert rows[0][:4] == [draft.run_id, "complete", "done", 2] and rows[0][6] == "classification"
    assert "real row" in rows[0][4] and "teacher-written rows" in rows[0][5]


@pytest.mark.slow
def test_the_embedded_teacher_survives_between_messages_of_a_ui_session() -> None:
    """The llama.cpp servers die with the thread that started them: a session's worker must outlive a message."""
    opts = RunOptions(gen=GenConfig(examples=12, minutes=3), train=TrainConfig(epochs=1), finetune=False,
                      retrieve=False)  # fmt: skip
    m = SessionManager(opts)
    try:
        s = m.get(None, "page")
        for message, n in ((PROMPT, 1), ("add a label refund", 2)):
            m.submit(s, message)
            deadline = time.time() + 600
            while (s.busy or len(s.versions) < n) and time.time() < deadline:
                if s.run_id and any(x["content"].startswith("Error") for x in s.messages()):
                    break
                time.sleep(0.5)
        said = [x["content"] for x in s.messages() if x["role"] == "assistant"]
        assert len(s.versions) == 2, said
    finally:
        m.close()
