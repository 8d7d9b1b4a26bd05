"""`p2m chat` in the terminal and `p2m ui`'s errors, through the real console script (fake teacher on loopback)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import FakeOpenAIServer
from tests.test_chat_seq import QA_EXAMPLES
from tests.test_cli import P2M, _env, assert_one_line_error, p2m
from tests.test_generate_seq import QA_PROMPT

pytestmark = pytest.mark.skipif(not P2M.exists(), reason="the p2m console script is not installed")

ROOT = Path(__file__).resolve().parents[1]
# `p2m` with the memorising stand-ins of tests/test_pipeline_seq.py for the sequence students (patched
# before the CLI starts): a task that writes text trains in seconds instead of minutes
MEMO_P2M = """
import sys
import p2m.tools.train_seq as ts
from tests.test_pipeline_seq import MemoStudent, _load
ts.finetune_generator = lambda train, val, instruction, cfg, progress=False: MemoStudent("causal-lm", dict(train))
ts.finetune_qa = lambda train, val, cfg, progress=False: MemoStudent("extractive-qa", dict(train))
ts.load_seq_student = _load
from p2m.agent.cli import main
sys.argv[0] = "p2m"
main()
"""

SCRIPT = '''"""
Classify customer support tickets as billing, bug or other.

Input: I was charged twice
Output: billing
"""
add a label refund
why did you do that?
/quit
'''


def test_terminal_chat_refines_and_a_later_call_continues_the_session(tmp_path) -> None:
    home = tmp_path / "home"
    with FakeOpenAIServer() as teacher:
        args = ["chat", "--llm", teacher.url, "--llm-model", "fake", "--examples", "30", "--no-finetune"]
        proc = subprocess.run([str(P2M), *args], input=SCRIPT, env=_env(home), capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        out = proc.stdout
        assert proc.returncode == 0, out + proc.stderr
        assert "Task v1: classify each customer support ticket as one of: billing, bug, other" in out
        assert "Version 1 trained" in out and "Version 2 trained" in out and "F1 refund" in out
        assert "what I did last, and why" in out
        session = re.search(r"session (\S+) kept; continue with", out).group(1)
        proc = p2m(home, "chat", "--session", session, "-m", "history", "-m", "stop and deploy")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "| v2 | added refund |" in proc.stdout and "Deployed version 2" in proc.stdout


def test_unknown_sessions_are_one_line_errors(tmp_path) -> None:
    home = tmp_path / "home"
    assert_one_line_error(p2m(home, "chat", "--session", "nope", "-m", "hi"), "no session 'nope'")
    assert_one_line_error(p2m(home, "ui", "--session", "nope", "--port", "1"), "no session 'nope'")


def test_terminal_chat_builds_and_refines_a_qa_task(tmp_path) -> None:
    script = (
        f'"""\n{QA_PROMPT}\n"""\nmake the answers shorter\n"""\n{QA_EXAMPLES}\n"""\nstop and deploy\n/quit\n'
    )
    with FakeOpenAIServer() as teacher:
        args = ["chat", "--llm", teacher.url, "--llm-model", "fake", "--examples", "16"]
        proc = subprocess.run([sys.executable, "-c", MEMO_P2M, *args], input=script, capture_output=True, text=True,
                              env={**_env(tmp_path / "home"), "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=300)  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Task v1: extractive QA" in out and "Version 2 trained" in out
    assert "I keep 1 of them to check the model on" in out and "Version 3 trained" in out
    assert re.search(
        r"Deployed version 3: SQuAD F1 \S+ on 2 real rows .*; SQuAD F1 \S+ on \d+ teacher-written", out
    )
