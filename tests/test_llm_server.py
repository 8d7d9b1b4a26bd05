"""The embedded teacher's process: a start that checks a real chat request, clear errors when it dies (at
start or mid-run), and restarts that lose nothing. Fast tests run tests/fakes.py as the server process;
the slow ones run llama.cpp itself."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from p2m.errors import LLMError
from p2m.tools.llm import LLMClient, LLMConfig
from p2m.tools.llm_open import open_llm
from p2m.tools.llm_server import SELF_TEST_PROMPT, EmbeddedServer, how_it_ended

FAKE = str(Path(__file__).with_name("fakes.py"))
MSGS = [("user", "Say ok.")]


def fake(*extra: str):
    return lambda port: [sys.executable, FAKE, "--port", str(port), *extra]


def _kill(server: EmbeddedServer, sig: int) -> None:
    os.kill(server.proc.pid, sig)
    server.proc.wait(10)


@pytest.mark.parametrize(
    ("code", "expected"),
    [(-4, "killed by SIGILL (illegal instruction)"), (-9, "killed by SIGKILL (killed)"), (3, "exited with code 3"),
     (132, "killed by SIGILL (illegal instruction)")],
)  # fmt: skip
def test_how_it_ended_names_the_signal(code, expected):
    assert how_it_ended(code) == expected


def test_a_server_that_exits_at_start_says_how_with_its_log(tmp_path):
    server = EmbeddedServer(log_path=tmp_path / "s.log", command=fake("--exit-at-start", "3"))
    with pytest.raises(LLMError) as err:
        server.start(timeout=30)
    msg = str(err.value)
    assert "exited with code 3 at start" in msg and "cannot load the model" in msg, msg
    assert "p2m doctor" in msg and "\n" not in msg
    assert not server.alive()


def test_a_build_that_dies_on_its_first_chat_request_is_caught_at_start(tmp_path):
    # what an AMX build does: /v1/models answers, the first real prompt kills the process with SIGILL
    server = EmbeddedServer(log_path=tmp_path / "s.log", command=fake("--die-on-chat", "SIGILL"))
    with pytest.raises(LLMError) as err:
        server.start(timeout=30)
    msg = str(err.value)
    assert "killed by SIGILL (illegal instruction) at start, on its first chat request" in msg, msg
    assert "make setup" in msg and "another CPU" in msg and "fake llama.cpp server" in msg
    assert f"pid {server.proc.pid}" in msg


def test_start_answers_a_real_chat_request_before_it_reports_up():
    with EmbeddedServer(command=fake()) as server:
        assert server.self_test["completion_tokens"] >= 1 and server.self_test["text"] == "ok"
        log = server.log_path
        assert log.exists()
    assert not log.exists(), "a temporary log goes with a server that ended well"


def _client(**kw) -> tuple[open_llm, LLMClient]:
    ctx = open_llm(LLMConfig(concurrency=1, **kw), server_command=fake())
    return ctx, ctx.__enter__()


@pytest.mark.parametrize("sig", [signal.SIGILL, signal.SIGKILL])
def test_a_server_killed_between_requests_is_restarted(sig):
    ctx, llm = _client()
    try:
        assert llm.complete(MSGS) == "ok"
        server = ctx.servers[0]
        first = server.proc.pid
        _kill(server, sig)
        assert llm.complete(MSGS) == "ok"
        assert server.alive() and server.proc.pid != first
        assert llm.restarts == 1 and llm.ledger.failures == {"server_died": 1}
    finally:
        ctx.__exit__()


@pytest.mark.parametrize("sig", [signal.SIGILL, signal.SIGKILL])
def test_a_server_killed_mid_generation_is_restarted_and_the_request_answered(sig):
    ctx = open_llm(LLMConfig(concurrency=1), server_command=fake("--delay", "1.5"))
    llm = ctx.__enter__()
    try:
        server = ctx.servers[0]
        out: list[str] = []
        t = threading.Thread(target=lambda: out.append(llm.complete(MSGS)))
        t.start()
        time.sleep(0.5)  # the request is being answered
        _kill(server, sig)
        t.join(60)
        assert out == ["ok"], "the request in flight is sent again to the restarted server"
        assert llm.restarts == 1
    finally:
        ctx.__exit__()


def test_restarts_are_bounded_and_the_last_death_is_explained():
    ctx, llm = _client()
    llm.max_restarts = 2
    try:
        for _ in range(2):
            _kill(ctx.servers[0], signal.SIGILL)
            assert llm.complete(MSGS) == "ok"
        _kill(ctx.servers[0], signal.SIGILL)
        with pytest.raises(LLMError) as err:
            llm.complete(MSGS)
        msg = str(err.value)
        assert "killed by SIGILL (illegal instruction) mid-run" in msg and "giving up" in msg, msg
        assert "make setup" in msg and "\n" not in msg
    finally:
        ctx.__exit__()


# the real llama.cpp server ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_embedded_server_answers_a_long_chat_prompt():
    with EmbeddedServer(n_threads=2) as server:
        assert server.self_test["prompt_tokens"] >= 200  # checked at start, before it is reported up
        answer = server.chat("Please read this and answer.\n" + SELF_TEST_PROMPT, max_tokens=24)
        assert answer["prompt_tokens"] >= 200 and answer["completion_tokens"] >= 1 and answer["text"].strip()


@pytest.mark.slow
def test_the_real_server_killed_mid_generation_is_restarted(tmp_path, sig=signal.SIGILL):
    """SIGILL, as a build for another CPU dies (SIGKILL is tested on the fake above)."""
    ctx = open_llm(LLMConfig(concurrency=1), log_path=tmp_path / "llm.log")
    with ctx as llm:
        server = ctx.servers[0]
        out: list[str] = []
        long = [("user", "Write a long story about a lighthouse keeper, at least three paragraphs.")]
        llm.complete(long, max_tokens=12)
        # the limit is kept (ChatOpenAI sends `max_completion_tokens`, which llama-cpp-python ignores)
        assert 1 <= llm.ledger.completion_tokens <= 12
        t = threading.Thread(target=lambda: out.append(llm.complete(long, max_tokens=400, seed=1)))
        t.start()
        time.sleep(1.0)  # generating
        _kill(server, sig)
        t.join(180)
        assert out and out[0].strip(), "the request was answered after the restart"
        assert llm.restarts == 1 and llm.ledger.failures.get("server_died") == 1
