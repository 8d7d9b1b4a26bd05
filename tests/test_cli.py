"""The real `p2m` console script in a subprocess: one-line errors, a full run, predict, runs, Ctrl-C + resume.

The teacher is FakeOpenAIServer on loopback (real ChatOpenAI on the client side); each test has its
own P2M_HOME.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.fakes import FakeOpenAIServer
from tests.helpers import closed_port

P2M = Path(sys.executable).with_name("p2m")
PROMPT = "Classify customer support tickets as billing, bug or other.\n\nInput: I was charged twice\nOutput: billing"

pytestmark = pytest.mark.skipif(not P2M.exists(), reason="the p2m console script is not installed")


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "P2M_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def p2m(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(P2M), *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    out = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode != 0, out
    assert "Traceback" not in proc.stderr + proc.stdout, out
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("Error:") and len(lines[0]) > len("Error: "), out
    for fragment in fragments:
        assert fragment in lines[0], out
    return lines[0]


def _db(home: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(str(home / "p2m.sqlite"), timeout=10))


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer() as s:
        yield s


# one-line errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["run", ""], ["run"], ["run", "   \n "]])
def test_empty_prompt(home, args):
    assert_one_line_error(p2m(home, *args), "prompt is empty")


def test_prompt_with_no_task(home, server):
    proc = p2m(home, "run", "hello there", "--llm", server.url, "--llm-model", "fake", "-q")
    assert_one_line_error(proc, "could not find a task")


def test_a_task_p2m_cannot_build(home, server):
    proc = p2m(home, "run", "Write JavaScript code for the described function.", "--llm", server.url, "-q")
    assert_one_line_error(proc, "JavaScript", "Python code only")


def test_unreachable_llm(home):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    proc = p2m(home, "run", PROMPT, "--llm", url, "--llm-timeout", "5", "-q")
    assert_one_line_error(proc, "cannot reach the LLM", url)
    assert proc.returncode == 1


def test_malformed_eval_file(home, tmp_path, server):
    bad = tmp_path / "eval.jsonl"
    bad.write_text('{"input": "charged twice", "output": "billing"}\n{"input": "oops"\n')
    proc = p2m(home, "run", PROMPT, "--llm", server.url, "--eval", str(bad), "-q")
    assert_one_line_error(proc, f"{bad}:2", "not valid JSON")


def test_missing_eval_file(home, tmp_path, server):
    proc = p2m(home, "run", PROMPT, "--llm", server.url, "--eval", str(tmp_path / "nope.jsonl"), "-q")
    assert_one_line_error(proc, "nope.jsonl", "no such file")


def test_unwritable_out(home, tmp_path, server):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = p2m(home, "run", PROMPT, "--llm", server.url, "--out", str(blocker / "run"), "-q")
    assert_one_line_error(proc, "cannot write to", str(blocker / "run"))


def test_unwritable_home(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = p2m(tmp_path / "unused", "runs", "--home", str(blocker / "home"))
    assert_one_line_error(proc, "cannot write to")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--llm", "localhost:8000/v1"], "http(s) URL"),
        (["--examples", "1"], "examples"),
        (["--epochs", "0"], "epochs"),
        (["--llm-timeout", "0"], "timeout"),
    ],
)
def test_bad_options(home, extra, fragment):
    assert_one_line_error(p2m(home, "run", PROMPT, *extra, "-q"), fragment)


def test_missing_prompt_file(home, tmp_path):
    proc = p2m(home, "run", "-f", str(tmp_path / "prompt.txt"), "-q")
    assert_one_line_error(proc, "cannot read the prompt file")


def test_predict_unknown_run(home):
    assert_one_line_error(p2m(home, "predict", "no-such-run", "some text"), "no-such-run", "p2m runs")


def test_resume_unknown_run(home):
    assert_one_line_error(p2m(home, "resume", "no-such-run"), "no run 'no-such-run'")


def test_runs_when_there_are_none(home):
    proc = p2m(home, "runs")
    assert proc.returncode == 0, proc.stderr
    assert "no runs yet" in proc.stdout


def test_help_has_an_example(home):
    proc = p2m(home, "run", "--help")
    assert proc.returncode == 0
    assert "Example:" in proc.stdout and "--llm" in proc.stdout


# a full run ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, server):
    home = tmp_path_factory.mktemp("cli") / "home"
    proc = p2m(
        home, "run", PROMPT, "--llm", server.url, "--llm-model", "fake", "--examples", "30", "--epochs", "1",
        "--max-rounds", "2", "-q",
        timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    m = re.search(r"^run (\S+): ", proc.stdout, re.M)
    assert m, proc.stdout
    yield home, m.group(1), proc
    shutil.rmtree(home.parent, ignore_errors=True)


def test_run_succeeds_and_prints_where_the_model_is(finished_run):
    home, run_id, proc = finished_run
    assert "Traceback" not in proc.stderr
    # both estimates, real rows first, each with its rows
    real = proc.stdout.index("validation, accuracy")
    assert "real row" in proc.stdout[real:] and "teacher-written rows" in proc.stdout[real:]
    assert proc.stdout.index("real row") < proc.stdout.index("teacher-written rows")
    assert "planner: " in proc.stdout and "→ round 1: " in proc.stdout and "kept: " in proc.stdout
    folder = home / "runs" / run_id
    assert f"model: {folder / 'model'}" in proc.stdout
    assert (
        (folder / "model").is_dir()
        and (folder / "README.md").is_file()
        and (folder / "report.json").is_file()
    )


def test_predict_prints_a_label(finished_run):
    home, run_id, _ = finished_run
    proc = p2m(home, "predict", run_id, "refund my invoice payment", "the app crashes with an error")
    assert proc.returncode == 0, proc.stderr
    labels = proc.stdout.split()
    assert len(labels) == 2 and set(labels) <= {"billing", "bug", "other"}


def test_predict_json(finished_run):
    import json

    home, run_id, _ = finished_run
    proc = p2m(home, "predict", run_id, "--json", "my card was charged")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["input"] == "my card was charged" and row["label"] in {"billing", "bug", "other"}


def test_predict_by_folder(finished_run, tmp_path):
    home, run_id, _ = finished_run
    proc = p2m(tmp_path / "other_home", "predict", str(home / "runs" / run_id), "hello")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in {"billing", "bug", "other"}


def test_runs_lists_it_as_complete(finished_run):
    home, run_id, _ = finished_run
    proc = p2m(home, "runs")
    assert proc.returncode == 0, proc.stderr
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith(run_id)]
    assert line.split()[1] == "complete"


def test_resume_of_a_complete_run_is_an_error(finished_run):
    home, run_id, _ = finished_run
    assert_one_line_error(p2m(home, "resume", run_id), "already complete")


# Ctrl-C and resume ---------------------------------------------------------------------------------


def _examples_stored(home: Path, run_id: str | None = None) -> int:
    try:
        with _db(home) as db:
            if run_id is None:
                return db.execute("SELECT COUNT(*) FROM examples").fetchone()[0]
            return db.execute("SELECT COUNT(*) FROM examples WHERE run_id = ?", (run_id,)).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_ctrl_c_then_resume(home, tmp_path):
    with FakeOpenAIServer(delay=0.05) as slow:
        args = ["run", PROMPT, "--llm", slow.url, "--llm-model", "fake", "--examples", "400", "--epochs", "1"]
        args += ["--no-finetune", "-q"]
        out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        with open(out, "w") as fo, open(err, "w") as fe:
            proc = subprocess.Popen(  # SIGINT as at a terminal, even when the tests run in the background
                [str(P2M), *args],
                env=_env(home),
                stdout=fo,
                stderr=fe,
                stdin=subprocess.DEVNULL,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
            try:
                deadline = time.monotonic() + 120
                while _examples_stored(home) < 16 and time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.2)
                assert proc.poll() is None, f"p2m exited early: {err.read_text()}"
                assert _examples_stored(home) >= 16, "generation did not start"
                proc.send_signal(signal.SIGINT)
                code = proc.wait(60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        stderr = err.read_text()
        assert code == 130, stderr
        done = subprocess.CompletedProcess(args, code, out.read_text(), stderr)
        line = assert_one_line_error(done, "interrupted", "p2m resume")
        m = re.search(r"p2m resume (\S+?)[`\s]", line + " ")
        assert m, line
        run_id = m.group(1)
        with _db(home) as db:
            status, stage = db.execute("SELECT status, stage FROM runs WHERE id = ?", (run_id,)).fetchone()
        assert (status, stage) == ("interrupted", "generate")
        before = _examples_stored(home, run_id)
        assert 16 <= before < 400

        proc = p2m(home, "resume", run_id, "-q", timeout=400)
        assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        assert "Traceback" not in proc.stderr
    with _db(home) as db:
        (status,) = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        repeated = db.execute(
            "SELECT request_index, COUNT(*) FROM examples WHERE run_id = ? GROUP BY request_index HAVING COUNT(*) > 1",
            (run_id,),
        ).fetchall()
        missing_index = db.execute(
            "SELECT COUNT(*) FROM examples WHERE run_id = ? AND request_index IS NULL", (run_id,)
        ).fetchone()[0]
    assert status == "complete"
    assert repeated == [], f"request indexes stored twice: {repeated}"
    assert missing_index == 0
    assert _examples_stored(home, run_id) > before
    assert (home / "runs" / run_id / "model").is_dir()
