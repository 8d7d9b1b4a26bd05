"""Faults, for real, through the `p2m` command: SIGKILL at every stage of every task type and of the planner,
then `p2m resume`; a teacher that fails 30% of its requests; a disk that fills up while a model or the
store is written. Each run is compared with an uninterrupted one on the same fake teacher.

Kills come from fault points (p2m/faults.py: the process SIGKILLs itself at a named moment, so every stage is
hit for sure); the teacher answers one request at a time (`--llm-concurrency 1`), so when the process dies
no answer is in flight and "no request repeated" can be checked exactly on the server's side.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import subprocess
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from tests.fakes import FAULTS, FakeOpenAIServer
from tests.test_cli import P2M, _env, assert_one_line_error
from tests.test_generate_seq import CODE_PROMPT, D2T_PROMPT, QA_PROMPT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not P2M.exists(), reason="the p2m console script is not installed"),
]

CLS_PROMPT = ("Classify customer support tickets as billing, bug or other.\n\nInput: I was charged twice\n"
              "Output: billing")  # fmt: skip
COMMON = [
    "--llm-model",
    "fake",
    "--llm-concurrency",
    "1",
    "--epochs",
    "1",
    "--no-retrieve",
    "--max-rounds",
    "1",
    "-q",
]
# stage entries, a fresh answer cached but not used, a batch of rows stored, a candidate recorded. The other
# task types share the parse stage's code, and a kill as generation starts is the first answer's case; they
# train one candidate, so a kill after it is recorded is a kill before the stage ends (as at deploy).
CLS_CHAIN = ["stage:parse", "stage:retrieve", "stage:generate", "answer@5", "rows@2", "stage:curate", "stage:train:0",
             "experiment", "stage:deploy"]  # fmt: skip
SEQ_CHAIN = ["answer@1", "rows@1", "stage:curate", "stage:train:0", "stage:deploy"]
# prompt, options, kill points, the candidates an uninterrupted run trains
CASES = {
    "classification": (CLS_PROMPT, ["--examples", "24"], CLS_CHAIN, ["r0-finetune", "r0-quick-trial"]),
    "extractive_qa": (QA_PROMPT, ["--examples", "12"], SEQ_CHAIN, ["r0-qa-reader"]),
    "text_to_code": (CODE_PROMPT, ["--examples", "10"], SEQ_CHAIN, ["r0-lora"]),
    "data_to_text": (D2T_PROMPT, ["--examples", "10"], SEQ_CHAIN, ["r0-lora"]),
}


def _run(home: Path, args: list[str], faults: str = "", timeout: float = 900, limit: int | None = None):
    env = {**_env(home), "P2M_FAULTS": faults} if faults else _env(home)

    def fsize() -> None:  # RLIMIT_FSIZE: a write past `limit` bytes fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([str(P2M), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, preexec_fn=fsize if limit else None)  # fmt: skip


def _db(home: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(str(home / "p2m.sqlite"), timeout=10))


def _state(home: Path) -> dict:
    """The run's status, examples (kept, all, request indices asked twice) and experiments by name."""
    with _db(home) as db:
        run_id, status = db.execute("SELECT id, status FROM runs ORDER BY created DESC LIMIT 1").fetchone()
        kept, total = db.execute(
            "SELECT SUM(kept), COUNT(*) FROM examples WHERE run_id=?", (run_id,)
        ).fetchone()
        twice = db.execute("SELECT COUNT(*) FROM (SELECT request_index FROM examples WHERE run_id=? AND request_index"
                           " IS NOT NULL GROUP BY request_index HAVING COUNT(*) > 1)", (run_id,)).fetchone()[0]  # fmt: skip
        names = sorted(n for (n,) in db.execute("SELECT name FROM experiments WHERE run_id=?", (run_id,)))
        actions = [
            a for (a,) in db.execute("SELECT action FROM decisions WHERE run_id=? ORDER BY id", (run_id,))
        ]
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
    return {"id": run_id, "status": status, "kept": kept, "total": total, "asked_twice": twice,
            "experiments": names, "decisions": actions, "integrity": ok}  # fmt: skip


def _reference(tmp_path: Path, prompt: str, extra: list[str], stop_at: str = "") -> tuple[dict, int]:
    """An uninterrupted run's state and the teacher requests it made; `stop_at` ends it there (a fault point
    after which it asks the teacher nothing and changes no example: training and deploying)."""
    with FakeOpenAIServer() as server:
        home = tmp_path / "reference"
        done = _run(home, ["run", prompt, "--llm", server.url, *COMMON, *extra], faults=stop_at)
        assert done.returncode == (-9 if stop_at else 0), done.stderr[-3000:]
        return _state(home), len(server.answered)


def _kill_chain(home: Path, url: str, first: list[str], chain: list[str]) -> dict:
    """`p2m run` killed at chain[0], then `p2m resume` killed at each next point, then resumed to the end."""
    run_id = None
    for i, point in enumerate(chain):
        args = first if i == 0 else ["resume", run_id, "-q"]
        proc = _run(home, args, faults=point)
        assert proc.returncode == -9, f"not killed at {point} (exit {proc.returncode}): {proc.stderr[-3000:]}"
        run_id = _state(home)["id"]
    final = _run(home, ["resume", run_id, "-q"])
    assert final.returncode == 0 and "Traceback" not in final.stderr, final.stderr[-3000:]
    return _state(home)


@pytest.mark.parametrize("task_type", list(CASES))
def test_sigkill_at_every_stage_then_resume_matches_an_uninterrupted_run(tmp_path, task_type):
    prompt, extra, chain, candidates = CASES[task_type]
    # the examples and the teacher's requests are final once training starts: the reference stops there
    reference, reference_requests = _reference(tmp_path, prompt, extra, stop_at="stage:train:0")
    with FakeOpenAIServer() as server:
        first = ["run", prompt, "--llm", server.url, *COMMON, *extra]
        final = _kill_chain(tmp_path / "killed", server.url, first, chain)
        repeated = {k: n for k, n in Counter(server.answered).items() if n > 1}
        assert not repeated, f"{len(repeated)} teacher requests were answered twice"
        assert len(server.answered) == reference_requests
    assert final["status"] == "complete" and final["integrity"] == "ok"
    assert final["asked_twice"] == 0
    assert (final["kept"], final["total"]) == (reference["kept"], reference["total"])
    assert final["experiments"] == candidates, "an experiment was lost or recorded twice"
    assert final["decisions"] == reference["decisions"] + ["select", "stop"], (
        "a decision was lost or repeated"
    )
    report = json.loads((tmp_path / "killed" / "runs" / final["id"] / "report.json").read_text())
    assert report["task"]["task_type"] == task_type


# a demonstration that contradicts the fake teacher's words, so the student stays short of the target
HARD = CLS_PROMPT + "\n\nInput: invoice crash refund error payment glitch\nOutput: other"


def test_sigkill_at_every_planner_step_then_resume(tmp_path):
    # --no-finetune: one candidate a round (the quick trial), so the kill after it is mid-round
    plan = ["--examples", "60", "--decider", "rule", "--target", "0.999", "--max-rounds", "2",
            "--no-finetune"]  # fmt: skip
    reference, reference_requests = _reference(tmp_path, HARD, plan)
    chain = ["stage:generate", "answer@4", "stage:curate", "stage:train:0", "experiment", "stage:generate:1",
             "stage:train:1", "stage:deploy"]  # fmt: skip
    with FakeOpenAIServer() as server:
        first = ["run", HARD, "--llm", server.url, *COMMON, *plan]
        final = _kill_chain(tmp_path / "killed", server.url, first, chain)
        assert max(Counter(server.answered).values()) == 1, "a teacher request was answered twice"
        assert len(server.answered) == reference_requests
    assert final["status"] == "complete" and final["asked_twice"] == 0
    assert (final["kept"], final["total"]) == (reference["kept"], reference["total"])
    assert final["experiments"] == reference["experiments"]
    # each node's work is in the run store before the next starts, and a resumed run enters the graph where the
    # store says it stopped: no decision is taken again
    assert final["decisions"] == reference["decisions"]


def test_a_teacher_failing_30_percent_of_requests_still_completes_the_run(tmp_path):
    home = tmp_path / "flaky"
    with FakeOpenAIServer(fail_rate=0.3, hang=2.0, seed=1) as server:
        done = _run(home, ["run", CLS_PROMPT, "--llm", server.url, "--llm-model", "fake", "--llm-timeout", "1",
                           "--examples", "45", "--budget-llm-calls", "150", "--epochs", "1", "--no-retrieve",
                           "--max-rounds", "1", "-q"])  # fmt: skip
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
        injected = dict(server.faults)
    assert set(injected) == set(FAULTS), injected  # every kind of failure was met
    state = _state(home)
    report = json.loads((home / "runs" / state["id"] / "report.json").read_text())
    failures = report["cost"]["failures"]
    # the report counts them: HTTP 500s, timeouts, cut bodies (lost connections), bad JSON, empty answers
    assert failures.get("http_500") == injected["http_500"]
    assert failures.get("timeout", 0) + failures.get("connection", 0) >= injected["timeout"]
    assert failures.get("invalid_json", 0) + failures.get("empty", 0) >= 1
    assert report["cost"]["calls"] <= 150 + 10  # within the budget (the parse and label-prior calls aside)
    assert state["kept"] >= 30


def test_disk_full_while_saving_a_model_then_resume(tmp_path):
    home = tmp_path / "full"
    with FakeOpenAIServer() as server:
        args = ["run", CLS_PROMPT, "--llm", server.url, *COMMON, "--examples", "24"]
        full = _run(
            home, args, limit=20_000_000
        )  # the store fits in 20 MB, a fine-tuned MiniLM (87 MB) does not
        line = assert_one_line_error(full, "disk is full", "p2m resume")
        state = _state(home)
        assert state["integrity"] == "ok" and state["status"] == "failed" and state["kept"] >= 12, (
            line,
            state,
        )
        resumed = _run(home, ["resume", state["id"], "-q"])
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _state(home)
    assert after["status"] == "complete" and (after["kept"], after["total"]) == (
        state["kept"],
        state["total"],
    )


def test_disk_full_while_writing_the_store_then_resume(tmp_path):
    home = tmp_path / "full"
    with FakeOpenAIServer() as server:
        args = ["run", CLS_PROMPT, "--llm", server.url, *COMMON, "--examples", "90", "--no-finetune"]
        # the store and the answer cache (SQLite, with their write-ahead logs) pass this while rows are stored
        full = _run(home, args, limit=400_000)
        assert_one_line_error(full, "disk is full", "p2m resume")
        state = _state(home)
        assert state["integrity"] == "ok" and 0 < state["total"] < 90, state
        resumed = _run(home, ["resume", state["id"], "-q"])
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _state(home)["status"] == "complete"


def test_disk_full_before_the_store_opens(tmp_path):
    with FakeOpenAIServer() as server:
        full = _run(tmp_path / "full", ["run", CLS_PROMPT, "--llm", server.url, *COMMON], limit=20_000)
    assert_one_line_error(full, "disk is full", "opening the run store")
