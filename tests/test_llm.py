"""The one LLM client: cache, ledger, structured output, choices, config validation, endpoint errors."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from p2m.errors import ConfigError, LLMError
from p2m.memory.cache import ResponseCache
from p2m.tools.llm import LLMClient, LLMConfig
from p2m.tools.llm_open import open_llm
from tests.fakes import FakeOpenAIServer
from tests.helpers import closed_port

MSGS = [("system", "You are terse."), ("user", "Say hi.")]
SCHEMA = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}


@pytest.fixture
def cache(tmp_path) -> ResponseCache:
    c = ResponseCache(tmp_path / "cache.sqlite")
    yield c
    c.close()


@pytest.fixture
def cached_llm(fake_chat, cache) -> LLMClient:
    return LLMClient(fake_chat, "fake", "json_object", cache=cache)


# cache ---------------------------------------------------------------------------------------------


def test_temperature_zero_repeat_is_a_cache_hit(cached_llm, fake_chat):
    fake_chat.enqueue("first answer", "second answer")
    assert cached_llm.complete(MSGS, purpose="t") == "first answer"
    assert cached_llm.complete(MSGS, purpose="t") == "first answer"
    assert len(fake_chat.history) == 1
    assert cached_llm.ledger.calls == 2
    assert cached_llm.ledger.cached == 1


def test_seeded_sampling_is_cached(cached_llm, fake_chat):
    fake_chat.enqueue("a", "b")
    assert cached_llm.complete(MSGS, temperature=0.9, seed=7) == "a"
    assert cached_llm.complete(MSGS, temperature=0.9, seed=7) == "a"
    assert len(fake_chat.history) == 1


def test_unseeded_sampling_is_not_cached(cached_llm, fake_chat, cache):
    fake_chat.enqueue("a", "b")
    assert cached_llm.complete(MSGS, temperature=0.9) == "a"
    assert cached_llm.complete(MSGS, temperature=0.9) == "b"
    assert len(fake_chat.history) == 2
    assert cached_llm.ledger.cached == 0
    assert len(cache) == 0


def test_cache_key_covers_what_shapes_the_answer(cached_llm, fake_chat):
    cached_llm.complete(MSGS)
    cached_llm.complete(MSGS, seed=1)
    cached_llm.complete(MSGS, max_tokens=10)
    cached_llm.complete(MSGS, schema=SCHEMA)
    cached_llm.complete([("user", "Say bye.")])
    assert len(fake_chat.history) == 5


def test_cache_is_shared_across_clients_and_keyed_by_model(fake_chat, cache):
    LLMClient(fake_chat, "fake", cache=cache).complete(MSGS)
    LLMClient(fake_chat, "fake", cache=cache).complete(MSGS)
    assert len(fake_chat.history) == 1
    LLMClient(fake_chat, "other-model", cache=cache).complete(MSGS)
    assert len(fake_chat.history) == 2


def test_without_cache_every_call_reaches_the_model(fake_llm, fake_chat):
    fake_llm.complete(MSGS)
    fake_llm.complete(MSGS)
    assert len(fake_chat.history) == 2


# ledger --------------------------------------------------------------------------------------------


def test_ledger_and_on_call(fake_chat, cache):
    seen: list[tuple[Any, ...]] = []
    llm = LLMClient(fake_chat, "fake", cache=cache, on_call=lambda *a: seen.append(a))
    llm.complete(MSGS, purpose="parse")
    llm.complete(MSGS, purpose="parse")  # cached
    llm.complete(MSGS, temperature=1.0, purpose="generate")
    led = llm.ledger
    assert (led.calls, led.cached) == (3, 1)
    assert led.prompt_tokens == 60 and led.completion_tokens == 30  # the fake reports 20 + 10 per call
    assert led.tokens == 90
    assert led.by_purpose == {"parse": 2, "generate": 1}
    assert [(p, c, pt, ct) for p, c, pt, ct, _ in seen] == [
        ("parse", False, 20, 10),
        ("parse", True, 20, 10),
        ("generate", False, 20, 10),
    ]
    assert all(s >= 0 for *_, s in seen)
    d = led.to_dict()
    assert d["calls"] == 3 and d["tokens"] == 90 and d["by_purpose"] == {"parse": 2, "generate": 1}
    json.dumps(d)


# json and choose -----------------------------------------------------------------------------------


def test_json_parses_an_object(fake_llm, fake_chat):
    fake_chat.enqueue('{"x": "yes"}')
    assert fake_llm.json(MSGS, SCHEMA) == {"x": "yes"}


def test_json_strips_markdown_fences(fake_llm, fake_chat):
    fake_chat.enqueue('```json\n{"x": "fenced"}\n```')
    assert fake_llm.json(MSGS, SCHEMA) == {"x": "fenced"}


@pytest.mark.parametrize("reply", ["not json", "", '{"x": ', 'Sure! {"x": 1}'])
def test_json_returns_none_for_non_json(fake_llm, fake_chat, reply):
    fake_chat.enqueue(reply)
    assert fake_llm.json(MSGS, SCHEMA) is None


def test_choose_returns_one_of_the_options(fake_llm, fake_chat):
    fake_chat.enqueue('{"answer": "bug"}')
    assert fake_llm.choose(MSGS, ["billing", "bug", "other"]) == "bug"
    params = fake_chat.history[-1]["params"]
    assert params["response_format"]["schema"]["properties"]["answer"]["enum"] == ["billing", "bug", "other"]
    assert params["temperature"] == 0
    assert params["max_tokens"] == 24


@pytest.mark.parametrize(
    "reply", ['{"answer": "maybe"}', '{"answer": "BUG"}', '{"other": "bug"}', '["bug"]', "bug"]
)
def test_choose_never_returns_anything_else(fake_llm, fake_chat, reply):
    fake_chat.enqueue(reply)
    assert fake_llm.choose(MSGS, ["billing", "bug", "other"]) is None


def test_choose_passes_max_tokens_and_purpose(fake_llm, fake_chat):
    fake_chat.enqueue('{"answer": "a"}')
    assert fake_llm.choose(MSGS, ["a", "b"], max_tokens=5, purpose="teacher") == "a"
    assert fake_chat.history[-1]["params"]["max_tokens"] == 5
    assert fake_llm.ledger.by_purpose == {"teacher": 1}


# request shape -------------------------------------------------------------------------------------


def test_response_format_json_object_carries_the_schema(fake_chat):
    LLMClient(fake_chat, "fake", "json_object").json(MSGS, SCHEMA)
    assert fake_chat.history[-1]["params"]["response_format"] == {"type": "json_object", "schema": SCHEMA}


def test_response_format_json_schema(fake_chat):
    LLMClient(fake_chat, "fake", "json_schema").json(MSGS, SCHEMA)
    fmt = fake_chat.history[-1]["params"]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"] == SCHEMA
    assert fmt["json_schema"]["name"]
    assert "schema" not in fmt


def test_plain_completion_sends_no_response_format_and_no_seed(fake_llm, fake_chat):
    fake_llm.complete(MSGS, max_tokens=33)
    call = fake_chat.history[-1]
    assert "response_format" not in call["params"]
    assert "seed" not in call["params"]
    assert call["params"]["max_tokens"] == 33
    assert call["messages"] == MSGS


def test_seed_is_sent(fake_llm, fake_chat):
    fake_llm.complete(MSGS, temperature=0.7, seed=11)
    assert fake_chat.history[-1]["params"]["seed"] == 11
    assert fake_chat.history[-1]["params"]["temperature"] == 0.7


def test_assistant_messages_round_trip(fake_llm, fake_chat):
    fake_llm.complete([("user", "a"), ("assistant", "b"), ("user", "c")])
    assert fake_chat.history[-1]["messages"] == [("user", "a"), ("assistant", "b"), ("user", "c")]


# config --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["localhost:8000/v1", "ftp://host/v1", "127.0.0.1:8000"])
def test_config_rejects_non_http_url(url):
    with pytest.raises(ConfigError, match="http"):
        LLMConfig(base_url=url)


def test_config_rejects_bad_structured():
    with pytest.raises(ConfigError, match="structured") as err:
        LLMConfig(base_url="http://127.0.0.1:1/v1", structured="xml")
    assert "xml" in str(err.value)


@pytest.mark.parametrize("timeout", [0, -1])
def test_config_rejects_non_positive_timeout(timeout):
    with pytest.raises(ConfigError, match="timeout"):
        LLMConfig(timeout=timeout)


def test_config_defaults_to_embedded():
    cfg = LLMConfig.from_env()
    assert cfg.base_url is None and cfg.api_key is None and cfg.model is None


def test_config_from_env(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("P2M_LLM_MODEL", "m1")
    cfg = LLMConfig.from_env()
    assert (cfg.base_url, cfg.api_key, cfg.model) == ("http://127.0.0.1:9/v1", "sk-test", "m1")
    cfg = LLMConfig.from_env("http://127.0.0.1:10/v1", "m2", timeout=3)
    assert (cfg.base_url, cfg.model, cfg.timeout) == ("http://127.0.0.1:10/v1", "m2", 3)


def test_api_key_is_not_used_for_the_embedded_teacher(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert LLMConfig.from_env().api_key is None


# real ChatOpenAI over loopback ---------------------------------------------------------------------


def test_unreachable_endpoint_is_llm_error_naming_the_url():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with open_llm(LLMConfig(base_url=url, max_retries=0, timeout=5)) as llm:
        with pytest.raises(LLMError) as err:
            llm.complete(MSGS)
    assert url in str(err.value)
    assert "--llm" in str(err.value)


def test_fake_openai_server_works_end_to_end(cache):
    with (
        FakeOpenAIServer() as server,
        open_llm(LLMConfig(base_url=server.url, model="fake"), cache=cache) as llm,
    ):
        assert llm.structured == "json_schema"  # auto for a non-embedded endpoint
        assert llm.model_name == "fake"
        assert llm.complete(MSGS) == "ok"
        data = llm.json(
            [("user", "Write a new bug ticket.")], {"type": "object", "properties": {"text": {}}}, seed=1
        )
        assert isinstance(data, dict) and isinstance(data["text"], str) and data["text"]
        assert llm.choose([("user", "my invoice is wrong")], ["billing", "bug"]) == "billing"
        assert llm.complete(MSGS) == "ok"  # cached
        assert server.requests == 3
        assert llm.ledger.calls == 4 and llm.ledger.cached == 1
        assert llm.ledger.prompt_tokens == 80 and llm.ledger.completion_tokens == 40


def test_structured_override_is_kept():
    with FakeOpenAIServer() as server:
        with open_llm(LLMConfig(base_url=server.url, structured="json_object")) as llm:
            assert llm.structured == "json_object"
            assert llm.model_name == "gpt-4o-mini"  # the default name for a remote endpoint


class _StatusServer:
    """Answers every request with one HTTP status and an OpenAI-style error body."""

    def __init__(self, status: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.dumps(
                    {"error": {"message": f"status {status}", "type": "x", "code": None}}
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, "refused the API key"), (404, "has no model 'nope'"), (500, "answered HTTP 500")],
)
def test_http_errors_become_llm_errors(status, expected):
    server = _StatusServer(status)
    try:
        with open_llm(LLMConfig(base_url=server.url, model="nope", max_retries=0, timeout=5)) as llm:
            with pytest.raises(LLMError, match=expected) as err:
                llm.complete(MSGS)
        assert server.url in str(err.value)
    finally:
        server.close()


@pytest.mark.parametrize("structured", ["json_schema", "json_object"])
def test_an_answer_cut_at_max_tokens_is_a_counted_failure_not_a_crash(structured, monkeypatch):
    # a server that stops at max_tokens says finish_reason "length"; the OpenAI SDK then refuses to parse a
    # structured answer (LengthFinishReasonError): the embedded teacher did this on its first real run
    import tests.fakes as fakes

    monkeypatch.setattr(fakes, "FAULTS", ("invalid_json",))  # every answer cut short, finish_reason "length"
    with FakeOpenAIServer(responder=lambda m, p: '{"text": "an answer cut short"}', fail_rate=1.0) as server:
        with open_llm(
            LLMConfig(base_url=server.url, model="fake", structured=structured, max_retries=0)
        ) as llm:
            assert llm.json(MSGS, SCHEMA, max_tokens=8, purpose="generate") is None
            assert llm.ledger.failures.get("length", 0) + llm.ledger.failures.get("invalid_json", 0) == 1, (
                "a cut answer is one failure, counted once"
            )
            assert llm.json(MSGS, SCHEMA, max_tokens=8, purpose="generate") is None  # and again: no crash
