"""The live-Hub path against the loopback fake Hub: listing, incremental refresh, failures, download and use."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import constants
from huggingface_hub.utils import _http

from p2m.errors import ConfigError, DataError
from p2m.memory.vectors import VectorIndex
from p2m.tools import hubindex, hubsources
from p2m.tools.embed import embed
from p2m.tools.retrieve import load_candidate, map_columns
from p2m.tools.search import search
from p2m.tools.types import TaskSpec
from tests.fakehub import FakeHub, default_snapshot

needs_snapshot = pytest.mark.skipif(not default_snapshot().is_dir(), reason="no hub snapshot")
CARD = "---\nlicense: mit\nlanguage:\n- en\ntask_categories:\n- text-classification\n---\n"


def _csv(rows: list[tuple[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["review_body", "stars_label"])
    w.writerows(rows)
    return buf.getvalue()


def _reviews(n: int = 40) -> list[tuple[str, str]]:
    good = ["superb acting and a moving story", "delightful, charming film", "loved every minute of it"]
    bad = ["boring and far too long", "awful script, dull acting", "a tedious mess of a movie"]
    return [(f"{(good if i % 2 else bad)[i % 3]} #{i}", "good" if i % 2 else "bad") for i in range(n)]


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[float]:
    """The Hub client online, against a fresh HF cache; retry back-off sleeps recorded, not slept."""
    cache = tmp_path / "hf_cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    waits: list[float] = []
    monkeypatch.setattr(_http, "time", SimpleNamespace(sleep=waits.append))
    return waits


@pytest.fixture
def hub(online, monkeypatch) -> FakeHub:
    with FakeHub(max_datasets=60, max_models=20, page_size=25) as fake:
        fake.add_dataset_files(
            "p2m-test/movie-opinions",
            {"README.md": CARD + "Short movie reviews labelled good or bad by viewers.\n",
             "data/train.csv": _csv(_reviews())},
        )  # fmt: skip
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


@needs_snapshot
def test_hub_listing_fills_the_index_then_refreshes_incrementally(hub, tmp_path) -> None:
    index = VectorIndex(tmp_path / "index")
    stats = hubsources.build_from_hub(index, "datasets", embed)
    assert stats["added"] == 61 and index.count("datasets") == 61
    entry = index.get("datasets", ["p2m-test/movie-opinions"])["p2m-test/movie-opinions"]
    assert entry["metadata"]["license"] == "mit" and entry["metadata"]["task_type"] == "classification"
    assert entry["metadata"]["lang_en"] is True
    models = hubsources.build_from_hub(index, "models", embed)
    assert models["added"] == 20
    # nothing new: the listing stops at the watermark after the first (newest) page
    before = len(hub.requests)
    again = hubsources.build_from_hub(index, "datasets", embed)
    assert again == {"added": 0, "updated": 0, "unchanged": 0}
    assert hub.requests[before:].count(("GET", "/api/datasets")) == 1
    hub.add_dataset_files("p2m-test/new-one", {"README.md": CARD + "Fresh tweets about football.\n"})
    assert hubsources.build_from_hub(index, "datasets", embed)["added"] == 1


@needs_snapshot
def test_hub_error_mid_listing_keeps_what_was_indexed(hub, online, tmp_path) -> None:
    index = VectorIndex(tmp_path / "index")
    hub.fail_listing_after(pages=1, status=500)
    with pytest.raises(DataError, match=r"failed after 25 entries .* run the same command again"):
        hubsources.build_from_hub(index, "datasets", embed)
    assert len(online) == 5  # huggingface_hub retried before giving up
    assert index.count("datasets") == 25 and index.watermark(f"hub:{hub.url}:datasets") is None
    hub.clear_faults()
    stats = hubsources.build_from_hub(index, "datasets", embed)
    assert stats["unchanged"] == 25 and stats["added"] == 36


@needs_snapshot
def test_hub_stall_times_out_with_a_clear_message(hub, tmp_path) -> None:
    index = VectorIndex(tmp_path / "index")
    hub.delay_listing_after(pages=1, seconds=30)
    with pytest.raises(DataError, match="timed out"):
        hubsources.build_from_hub(index, "datasets", embed, timeout=0.3)
    assert index.count("datasets") == 25


def test_offline_hub_listing_says_what_to_do(tmp_path) -> None:
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        hubsources.build_from_hub(VectorIndex(tmp_path / "index"), "datasets", embed)


@needs_snapshot
def test_found_hub_dataset_is_downloaded_mapped_and_cached(hub, online, tmp_path) -> None:
    index = VectorIndex(tmp_path / "index")
    hubsources.build_from_hub(index, "datasets", embed)
    spec = TaskSpec("Classify movie reviews as positive or negative", labels=["positive", "negative"],
                    input_kind="movie review")  # fmt: skip
    cands = search(index, "movie reviews labelled good or bad", "datasets", k=3)
    cand = next(c for c in cands if c.id == "p2m-test/movie-opinions")
    table, provenance = load_candidate(cand)
    assert len(table) == 40 and provenance.startswith("hub:p2m-test/movie-opinions@")
    assert any(("GET", p) for p in hub.requests if p[1].endswith("/data/train.csv"))
    cmap = map_columns(table, spec)
    assert cmap is not None and cmap.input_column == "review_body" and cmap.label_column == "stars_label"
    assert cmap.labels == {"bad": "negative", "good": "positive"}
    # unknown dataset id: a clear error
    missing = cand.__class__(id="p2m-test/nope", kind="datasets", score=0, metadata={"revision": "main"})
    with pytest.raises(DataError, match="cannot load p2m-test/nope"):
        load_candidate(missing)


def test_offline_candidate_not_in_cache_is_skipped_clearly() -> None:
    from p2m.tools.types import Candidate

    with pytest.raises(DataError, match="not in the local cache and the Hub is offline"):
        load_candidate(Candidate(id="someone/data", kind="datasets", score=0, metadata={}))


def test_cache_entries_index_what_is_downloaded(hub, online, tmp_path) -> None:
    from huggingface_hub import hf_hub_download

    cache = os.environ[
        "HF_HUB_CACHE"
    ]  # the fixture's fresh cache, named (not huggingface_hub's import-time copy)
    hf_hub_download(
        "p2m-test/movie-opinions", "README.md", repo_type="dataset", endpoint=hub.url, cache_dir=cache
    )
    hf_hub_download("p2m-test/movie-opinions", "data/train.csv", repo_type="dataset", endpoint=hub.url,
                    cache_dir=cache)  # fmt: skip
    entries = list(hubsources.cache_entries())
    assert [e.id for e in entries] == ["p2m-test/movie-opinions"]
    assert entries[0].meta["license"] == "mit" and Path(entries[0].meta["cached_path"]).is_dir()
    index = VectorIndex(tmp_path / "index")
    hubindex.build(index, "datasets", entries, embed)
    cand = search(index, "movie reviews", "datasets", k=1)[0]
    table, provenance = load_candidate(cand)  # from the cache: no Hub request needed
    assert len(table) == 40 and provenance.startswith("hub:")


def test_front_matter_reader() -> None:
    front, body = hubsources._front_matter(
        "---\nlicense: mit # ok\nlanguage: [en, fr]\ntags:\n- a\n- b\n---\nHello"
    )
    assert front == {"license": "mit", "language": ["en", "fr"], "tags": ["a", "b"]} and body == "Hello"
    assert hubsources._front_matter("no card")[0] == {}
    assert json.dumps(front)
