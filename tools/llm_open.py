"""`open_llm`: the one way to get an LLMClient (tools/llm.py) — the embedded teacher's servers started (one
per core by default, side by side) and stopped around it, or any OpenAI-compatible endpoint by URL + key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from p2m.memory.cache import ResponseCache
from p2m.tools.llm import EMBEDDED_MODEL, LLMClient
from p2m.tools.llm_config import LLMConfig
from p2m.tools.llm_server import EmbeddedServer

__all__ = ["open_llm"]


class open_llm:  # noqa: N801 (used like a function: `with open_llm(cfg) as llm:`)
    """Context manager giving an LLMClient; starts and stops the embedded servers when needed.

    Args:
        config: which endpoint; `base_url=None` starts the embedded teacher.
        cache: the response cache to use.
        on_call: ledger callback (see LLMClient).
        log_path: where the embedded server writes its log (server i of n: `STEM-i.log`).
        on_failure: failure callback (see LLMClient).
        server_command: a command for a given port instead of llama.cpp's server (tests).
    """

    def __init__(
        self,
        config: LLMConfig,
        cache: ResponseCache | None = None,
        on_call: Callable[[str, bool, int, int, float], None] | None = None,
        log_path: Path | None = None,
        on_failure: Callable[[str, str], None] | None = None,
        server_command: Callable[[int], list[str]] | None = None,
    ) -> None:
        self.config, self.cache, self.on_call, self.log_path = config, cache, on_call, log_path
        self.on_failure, self.server_command = on_failure, server_command
        self.servers: list[EmbeddedServer] = []
        self.client: LLMClient | None = None

    def __enter__(self) -> LLMClient:
        from langchain_openai import ChatOpenAI

        cfg = self.config
        cores = max(1, os.cpu_count() or 1)
        if cfg.base_url is None:
            n = cfg.concurrency or cores
            for i in range(n):
                log_path = self.log_path.with_name(f"{self.log_path.stem}-{i}.log") if self.log_path else None
                self.servers.append(EmbeddedServer(n_threads=max(1, cores // n), log_path=log_path,
                                                   command=self.server_command))  # fmt: skip
            try:  # started side by side: each loads the model and answers its first chat request
                with ThreadPoolExecutor(max_workers=n) as ex:
                    for f in [ex.submit(s.start) for s in self.servers]:
                        f.result()
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

        def make_chat(url: str) -> Any:  # retries are the client's own (counted, Retry-After honoured)
            return ChatOpenAI(base_url=url, api_key=key, model=model, timeout=cfg.timeout, max_retries=0)

        chats = [make_chat(u) for u in urls]
        self.client = LLMClient(
            chats[0],
            name,
            structured,
            self.cache,
            self.on_call,
            base_url=urls[0],
            parallel=chats,
            capable=cfg.base_url is not None,
            servers=self.servers or None,
            make_chat=make_chat,
            on_failure=self.on_failure,
            max_retries=cfg.max_retries,
        )
        return self.client

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.closed = True
        for server in self.servers:
            server.stop()
        self.servers = []
