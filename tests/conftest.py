"""Every test runs offline in its own p2m home, with no API keys."""

from __future__ import annotations

import pytest

from p2m.tools.llm import LLMClient
from tests.fakes import FakeChatModel


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("P2M_HOME", str(tmp_path / "p2m_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "P2M_LLM_MODEL", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake_chat() -> FakeChatModel:
    return FakeChatModel()


@pytest.fixture
def fake_llm(fake_chat) -> LLMClient:
    return LLMClient(fake_chat, "fake", "json_object")
