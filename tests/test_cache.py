"""The LLM response cache: same request, same answer; persisted on disk."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing

from p2m.memory.cache import ResponseCache, request_key

REQ = {"model": "m", "messages": [["user", "hi"]], "temperature": 0, "seed": None}


def test_get_put_len(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert len(cache) == 0
    assert cache.get(REQ) is None
    cache.put(REQ, {"text": "hello", "prompt_tokens": 3})
    assert cache.get(REQ) == {"text": "hello", "prompt_tokens": 3}
    assert len(cache) == 1
    cache.close()


def test_put_replaces_same_request(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put(REQ, {"text": "a"})
    cache.put(dict(REQ), {"text": "b"})
    assert len(cache) == 1
    assert cache.get(REQ) == {"text": "b"}
    cache.close()


def test_different_requests_are_different_entries(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put(REQ, {"text": "a"})
    cache.put({**REQ, "seed": 1}, {"text": "b"})
    cache.put({**REQ, "temperature": 0.5}, {"text": "c"})
    assert len(cache) == 3
    assert cache.get({**REQ, "seed": 1}) == {"text": "b"}
    assert cache.get({**REQ, "model": "other"}) is None
    cache.close()


def test_persists_across_instances(tmp_path):
    path = tmp_path / "sub" / "c.sqlite"  # parent folders are created
    first = ResponseCache(path)
    first.put(REQ, {"text": "kept", "unicode": "é→✓"})
    first.close()
    second = ResponseCache(path)
    assert len(second) == 1
    assert second.get(REQ) == {"text": "kept", "unicode": "é→✓"}
    second.close()


def test_request_key_is_stable_and_order_independent():
    a = {"b": 1, "a": [1, 2], "c": {"y": 1, "x": 2}}
    b = {"c": {"x": 2, "y": 1}, "a": [1, 2], "b": 1}
    assert request_key(a) == request_key(b)
    assert len(request_key(a)) == 64
    assert request_key(a) != request_key({**a, "b": 2})


def test_entries_record_when_they_were_made(tmp_path):
    # `unixepoch('subsec')` needs SQLite >= 3.42; on older SQLite the column silently stays NULL.
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    cache.put(REQ, {"text": "a"})
    cache.close()
    with closing(sqlite3.connect(path)) as db:
        (created,) = db.execute("SELECT created FROM responses").fetchone()
    assert created is not None, f"created is NULL (SQLite {sqlite3.sqlite_version})"
    assert abs(created - time.time()) < 60
