"""The SQLite run store: runs, task versions, examples with provenance, stages, experiments, ledger."""

from __future__ import annotations

import pytest

from p2m.errors import ConfigError
from p2m.memory.store import RUN_STATUSES, RunStore


@pytest.fixture
def store(tmp_path) -> RunStore:
    s = RunStore(tmp_path / "store.sqlite")
    yield s
    s.close()


def _row(text: str, label: str = "pos", **kw) -> dict:
    return {"input": text, "output": label, "source": "generated:r1", **kw}


# runs ----------------------------------------------------------------------------------------------


def test_create_and_get_run(store):
    store.create_run("r1", "Classify x as a or b.", {"gen": {"examples": 10}}, "/tmp/r1")
    run = store.get_run("r1")
    assert run["id"] == "r1"
    assert run["status"] == "running"
    assert run["stage"] == "start"
    assert run["prompt"] == "Classify x as a or b."
    assert run["config"] == {"gen": {"examples": 10}}
    assert run["folder"] == "/tmp/r1"


def test_unknown_run_is_none(store):
    assert store.get_run("nope") is None


def test_list_runs_in_creation_order(store):
    for rid in ("a", "b", "c"):
        store.create_run(rid, "p", {}, f"/tmp/{rid}")
    assert [r["id"] for r in store.list_runs()] == ["a", "b", "c"]
    assert {r["status"] for r in store.list_runs()} == {"running"}


@pytest.mark.parametrize("status", RUN_STATUSES)
def test_set_status_each_status(store, status):
    store.create_run("r1", "p", {}, "/tmp/r1")
    store.set_status("r1", status)
    assert store.get_run("r1")["status"] == status


def test_set_status_keeps_stage_unless_given_and_records_error(store):
    store.create_run("r1", "p", {}, "/tmp/r1")
    store.set_stage("r1", "generate")
    store.set_status("r1", "failed", error="boom")
    run = store.get_run("r1")
    assert (run["status"], run["stage"], run["error"]) == ("failed", "generate", "boom")
    store.set_status("r1", "complete", stage="done")
    run = store.get_run("r1")
    assert (run["status"], run["stage"], run["error"]) == ("complete", "done", None)


def test_set_status_rejects_unknown_status(store):
    store.create_run("r1", "p", {}, "/tmp/r1")
    with pytest.raises(AssertionError):
        store.set_status("r1", "exploded")


def test_update_config(store):
    store.create_run("r1", "p", {"a": 1}, "/tmp/r1")
    store.update_config("r1", {"a": 2, "b": [1, 2]})
    assert store.get_run("r1")["config"] == {"a": 2, "b": [1, 2]}


def test_store_persists_across_instances(tmp_path):
    path = tmp_path / "s.sqlite"
    first = RunStore(path)
    first.create_run("r1", "p", {}, "/tmp/r1")
    first.add_examples("r1", [_row("hello world there")])
    first.close()
    second = RunStore(path)
    assert second.get_run("r1")["prompt"] == "p"
    assert [e["input"] for e in second.examples("r1")] == ["hello world there"]
    second.close()


def test_unopenable_store_is_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot open the run store"):
        RunStore(blocker / "sub" / "store.sqlite")


# task versions -------------------------------------------------------------------------------------


def test_task_versions_increment_per_run(store):
    assert store.add_task_version("r1", {"labels": ["a", "b"]}, note="parsed") == 1
    assert store.add_task_version("r1", {"labels": ["a", "b", "c"]}, note="added c") == 2
    assert store.add_task_version("r2", {"labels": ["x"]}) == 1
    assert store.task_version("r1") == (2, {"labels": ["a", "b", "c"]})
    assert store.task_version("r1", 1) == (1, {"labels": ["a", "b"]})
    assert store.task_version("r2") == (1, {"labels": ["x"]})


def test_task_version_missing(store):
    assert store.task_version("r1") is None
    store.add_task_version("r1", {})
    assert store.task_version("r1", 7) is None


# examples ------------------------------------------------------------------------------------------


def test_examples_carry_provenance_and_defaults(store):
    ids = store.add_examples(
        "r1",
        [
            _row("one two three", request_index=0, quality={"agree": 1.0}),
            {"input": "user row here", "output": "neg", "source": "user:file.jsonl", "split": "validation"},
        ],
    )
    assert len(ids) == 2 and ids[0] < ids[1]
    first, second = store.examples("r1")
    assert first["id"] == ids[0]
    assert first["source"] == "generated:r1"
    assert first["request_index"] == 0
    assert first["quality"] == {"agree": 1.0}
    assert first["split"] == "train" and first["kept"] == 1 and first["drop_reason"] is None
    assert second["source"] == "user:file.jsonl"
    assert second["split"] == "validation"
    assert second["request_index"] is None
    assert second["quality"] == {}


def test_examples_filters(store):
    store.add_examples(
        "r1",
        [
            _row("kept train row", request_index=0),
            _row("dropped row", request_index=1, kept=False, drop_reason="too_short"),
            _row("kept val row", request_index=2, split="validation"),
            {"input": "hub row", "output": "pos", "source": "hub:sst2@abc"},
        ],
    )
    store.add_examples("other", [_row("another run")])
    assert len(store.examples("r1", kept=None)) == 4
    assert [e["input"] for e in store.examples("r1", kept=False)] == ["dropped row"]
    assert [e["input"] for e in store.examples("r1", split="validation")] == ["kept val row"]
    assert [e["input"] for e in store.examples("r1", source_prefix="hub:")] == ["hub row"]
    assert len(store.examples("r1", kept=None, source_prefix="generated:")) == 3
    assert [e["input"] for e in store.examples("other")] == ["another run"]


def test_max_request_index(store):
    assert store.max_request_index("r1") == -1
    store.add_examples(
        "r1", [_row("a b c", request_index=3), _row("d e f", request_index=7), _row("no index")]
    )
    assert store.max_request_index("r1") == 7
    assert store.max_request_index("r2") == -1


def test_update_examples(store):
    a, b = store.add_examples("r1", [_row("first row here"), _row("second row here")])
    store.update_examples(
        [
            {"id": a, "kept": False, "drop_reason": "near_duplicate", "quality": {"cv": 0.1}},
            {"id": b, "split": "validation"},
            {"id": b},  # nothing to change is fine
        ]
    )
    rows = {r["id"]: r for r in store.examples("r1", kept=None)}
    assert rows[a]["kept"] == 0 and rows[a]["drop_reason"] == "near_duplicate"
    assert rows[a]["quality"] == {"cv": 0.1}
    assert rows[a]["split"] == "train"
    assert rows[b]["kept"] == 1 and rows[b]["split"] == "validation" and rows[b]["drop_reason"] is None


def test_update_examples_can_revive_a_row(store):
    (a,) = store.add_examples("r1", [_row("row", kept=False, drop_reason="balance")])
    store.update_examples([{"id": a, "kept": True, "drop_reason": None}])
    (row,) = store.examples("r1")
    assert row["kept"] == 1 and row["drop_reason"] is None


def test_drop_counts(store):
    store.add_examples(
        "r1",
        [
            _row("k1"),
            _row("k2"),
            _row("d1", kept=False, drop_reason="too_short"),
            _row("d2", kept=False, drop_reason="too_short"),
            _row("d3", kept=False, drop_reason="duplicate"),
        ],
    )
    assert store.drop_counts("r1") == {"kept": 2, "too_short": 2, "duplicate": 1}
    assert store.drop_counts("r2") == {}


# stages --------------------------------------------------------------------------------------------


def test_stage_done_and_info(store):
    assert store.stage_info("r1", "generate") is None
    store.stage_done("r1", "generate", {"requests": 12, "stopped_by": "target"})
    assert store.stage_info("r1", "generate") == {"requests": 12, "stopped_by": "target"}
    store.stage_done("r1", "parse")
    assert store.stage_info("r1", "parse") == {}
    assert store.stage_info("r2", "generate") is None


def test_stage_done_replaces_and_clear_stages(store):
    store.stage_done("r1", "train", {"v": 1})
    store.stage_done("r1", "train", {"v": 2})
    assert store.stage_info("r1", "train") == {"v": 2}
    store.stage_done("r1", "curate", {"k": 1})
    store.clear_stages("r1", ["train"])
    assert store.stage_info("r1", "train") is None
    assert store.stage_info("r1", "curate") == {"k": 1}


# experiments and decisions -------------------------------------------------------------------------


def test_experiments_round_trip(store):
    exp_id = store.add_experiment(
        "r1",
        {
            "name": "quick-trial",
            "student": "embedding-logreg",
            "params": {"C": 2.0},
            "n_train": 40,
            "report": {"score": 0.9, "per_label": {"a": {"f1": 0.9}}},
            "model_path": "/tmp/m",
            "seconds": 1.5,
        },
    )
    store.add_experiment(
        "r1", {"name": "finetune", "student": "seq", "params": {}, "n_train": 40, "report": {"score": 0.95}}
    )
    first, second = store.experiments("r1")
    assert first["id"] == exp_id
    assert first["params"] == {"C": 2.0}
    assert first["report"]["per_label"]["a"]["f1"] == 0.9
    assert (first["n_train"], first["model_path"], first["seconds"]) == (40, "/tmp/m", 1.5)
    assert second["name"] == "finetune" and second["model_path"] is None and second["seconds"] == 0.0
    assert store.experiments("r2") == []


def test_decisions_in_order(store):
    store.add_decision("r1", {"action": "generate_more", "reason": "budget", "by": "rule", "args": {"n": 10}})
    store.add_decision("r1", {"action": "stop", "reason": "target reached", "by": "llm"})
    assert store.decisions("r1") == [
        {"action": "generate_more", "reason": "budget", "by": "rule", "args": {"n": 10}},
        {"action": "stop", "reason": "target reached", "by": "llm", "args": {}},
    ]
    assert store.decisions("r2") == []


# LLM ledger ----------------------------------------------------------------------------------------


def test_ledger_sums(store):
    store.log_llm_call("r1", "parse", False, 100, 20, 0.5)
    store.log_llm_call("r1", "generate", True, 50, 10, 0.25)
    store.log_llm_call("r1", "generate", False, 30, 5, 1.0)
    store.log_llm_call("r2", "generate", False, 999, 999, 9.0)
    led = store.ledger("r1")
    assert led["calls"] == 3
    assert led["cached"] == 1
    assert led["prompt_tokens"] == 180
    assert led["completion_tokens"] == 35
    assert led["seconds"] == pytest.approx(1.75)


def test_empty_ledger_is_zeros(store):
    assert store.ledger("r1") == {
        "calls": 0,
        "cached": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "seconds": 0,
        "failures": {},
    }


def test_ledger_counts_failures_by_kind(store):
    store.log_llm_failure("r1", "generate", "http_500")
    store.log_llm_failure("r1", "generate", "http_500")
    store.log_llm_failure("r1", "parse", "invalid_json")
    store.log_llm_failure("r2", "generate", "timeout")
    assert store.ledger("r1")["failures"] == {"http_500": 2, "invalid_json": 1}


# failures ------------------------------------------------------------------------------------------


def _other_writer_can_write(path) -> bool:
    import sqlite3

    db = sqlite3.connect(str(path), timeout=0.2)
    try:
        db.execute("INSERT INTO decisions (run_id, action) VALUES ('probe', 'probe')")
        db.commit()
        return True
    except sqlite3.OperationalError:  # database is locked
        return False
    finally:
        db.close()


def test_failed_write_does_not_lock_the_database(tmp_path):
    import sqlite3

    path = tmp_path / "s.sqlite"
    store = RunStore(path)
    store.create_run("r1", "p", {}, "/tmp/r1")
    with pytest.raises(sqlite3.IntegrityError):
        store.create_run("r1", "p", {}, "/tmp/r1")
    assert _other_writer_can_write(path), "a failed statement left its transaction open"
    store.close()


def test_add_examples_is_all_or_nothing(store):
    with pytest.raises(KeyError):
        store.add_examples(
            "r1", [_row("first row", request_index=0), {"input": "no source", "output": "pos"}]
        )
    store.add_examples("r1", [_row("second call", request_index=1)])
    assert [e["input"] for e in store.examples("r1", kept=None)] == ["second call"]
