"""kill -9 a planner run in generate and in train, resume it, and compare with an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fakes import FakeOpenAIServer
from tests.test_cli import P2M, _db, _env, p2m

HARD = ("Classify customer support tickets as billing, bug or other.\n\nInput: I was charged twice\nOutput: billing"
        "\n\nInput: invoice crash refund error payment glitch\nOutput: other")  # fmt: skip


def _args(url: str) -> list[str]:
    return ["run", HARD, "--llm", url, "--llm-model", "fake", "--examples", "120", "--epochs", "1", "--planner",
            "--decider", "rule", "--target", "0.999", "--max-rounds", "2", "--no-retrieve", "-q"]  # fmt: skip


def _stage(home: Path) -> tuple[str | None, str | None]:
    try:
        with _db(home) as db:
            row = db.execute("SELECT id, stage FROM runs ORDER BY created DESC LIMIT 1").fetchone()
    except Exception:  # the store is not created yet
        return None, None
    return (row[0], row[1]) if row else (None, None)


def _final(home: Path, run_id: str) -> tuple[int, int, int]:
    with _db(home) as db:
        kept = db.execute("SELECT COUNT(*) FROM examples WHERE run_id=? AND kept=1", (run_id,)).fetchone()[0]
        total = db.execute("SELECT COUNT(*) FROM examples WHERE run_id=?", (run_id,)).fetchone()[0]
        repeats = db.execute("SELECT COUNT(*) FROM (SELECT request_index FROM examples WHERE run_id=? AND "
                             "request_index IS NOT NULL GROUP BY request_index HAVING COUNT(*) > 1)",
                             (run_id,)).fetchone()[0]  # fmt: skip
    return kept, total, repeats


def _uninterrupted(tmp_path: Path, url: str) -> tuple[int, int, int]:
    home = tmp_path / "reference"
    proc = p2m(home, *_args(url), timeout=600)
    assert proc.returncode == 0, proc.stderr
    return _final(home, _stage(home)[0])


@pytest.mark.slow
@pytest.mark.parametrize("kill_in", ["generate", "train:0"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, kill_in) -> None:
    with FakeOpenAIServer(delay=0.02) as server:
        home = tmp_path / "killed"
        proc = subprocess.Popen([str(P2M), *_args(server.url)], env=_env(home), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while _stage(home)[1] != kill_in and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proc.poll() is None, f"p2m ended before {kill_in}: {proc.stderr.read().decode()[-2000:]}"
            time.sleep(0.5)  # well inside the stage
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        run_id, stage = _stage(home)
        assert stage == kill_in
        resumed = p2m(home, "resume", run_id, "-q", timeout=600)
        assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
        kept, total, repeats = _final(home, run_id)
        assert repeats == 0, "a generation request was made twice"
        assert (kept, total) == _uninterrupted(tmp_path, server.url)[:2]
        with _db(home) as db:
            names = [n for (n,) in db.execute("SELECT name FROM experiments WHERE run_id=?", (run_id,))]
        assert len(names) == len(set(names)), "an experiment was recorded twice"
