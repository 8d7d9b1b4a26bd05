"""What the one LLM client is configured with (`LLMConfig`) and what it counts (`Ledger`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from p2m.errors import ConfigError

__all__ = ["LLMConfig", "Ledger"]


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
        max_retries: retries with exponential backoff on timeouts, 5xx, 429 and lost connections.
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
    max_retries: int = 3
    concurrency: int = 0

    def __post_init__(self) -> None:
        if self.structured not in ("auto", "json_object", "json_schema"):
            raise ConfigError(f"structured must be auto, json_object or json_schema, not {self.structured!r}")
        if self.base_url is not None and (
            not self.base_url.startswith(("http://", "https://")) or not urlsplit(self.base_url).hostname
        ):
            raise ConfigError(
                f"--llm must be an http(s) URL such as http://127.0.0.1:8000/v1, not {self.base_url!r}"
            )
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be positive, not {self.timeout}")
        if self.concurrency < 0:
            raise ConfigError(f"concurrency must be ≥ 0, not {self.concurrency}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be ≥ 0, not {self.max_retries}")

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
    """What the teacher cost: calls (cached ones apart), tokens and seconds, and what failed, by kind
    (`http_500`, `timeout`, `connection`, `invalid_json`, `empty`, `server_died`, `request_failed`)."""

    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    by_purpose: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

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
            "failures": dict(self.failures),
        }
