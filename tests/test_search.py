"""The search index and search: build from a snapshot, idempotence and resume, ranking, filters, dedup, CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from p2m.agent.cli import main
from p2m.errors import ConfigError, DataError
from p2m.memory.vectors import VectorIndex, matches_where, open_index
from p2m.tools import hubindex, hubsources
from p2m.tools.embed import embed
from p2m.tools.search import SearchFilters, choose_student, same_dataset, search
from p2m.tools.types import TaskSpec
from tests.fakehub import default_snapshot

SNAPSHOT = default_snapshot()
needs_snapshot = pytest.mark.skipif(not SNAPSHOT.is_dir(), reason=f"no hub snapshot at {SNAPSHOT}")
WANTED = {"imdb", "linxinyuan/imdb", "sst2", "ag_news", "sms_spam", "squad", "lhoestq/squad", "e2e_nlg",
          "GEM/e2e_nlg", "neulab/conala", "dair-ai/emotion", "philschmid/emotion", "rotten_tomatoes",
          "maritaca-ai/imdb_pt", "trec", "yelp_polarity"}  # fmt: skip


def small_snapshot(folder: Path, n_datasets: int = 120, n_models: int = 40) -> Path:
    """A snapshot folder with the datasets tests ask about plus the first rows of the real snapshot."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    with (SNAPSHOT / "datasets.jsonl").open() as f:
        for i, line in enumerate(f):
            row = json.loads(line)
            if i < n_datasets or row["id"] in WANTED:
                rows.append(line)
    (folder / "datasets.jsonl").write_text("".join(rows))
    with (SNAPSHOT / "models.jsonl").open() as f:
        models = [line for _, line in zip(range(n_models), f, strict=False)]
    (folder / "models.jsonl").write_text("".join(models))
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """One small index for the module (embedding is the slow part): (index folder, snapshot folder)."""
    if not SNAPSHOT.is_dir():
        pytest.skip("no hub snapshot")
    root = tmp_path_factory.mktemp("idx")
    snap = small_snapshot(root / "snap")
    index = VectorIndex(root / "index")
    for kind, (total, entries) in hubindex.snapshot_entries(snap).items():
        hubindex.build(index, kind, entries, embed, total=total)
    hubindex.build(index, "models", hubsources.local_model_entries(), embed)
    index.close()
    return root / "index", snap


def test_where_language_subset() -> None:
    meta = {"task_type": "classification", "rows": 500, "lang_en": True}
    assert matches_where(meta, {"$and": [{"task_type": "classification"}, {"rows": {"$lte": 1000}}]})
    assert not matches_where(meta, {"rows": {"$gt": 1000}})
    assert matches_where(meta, {"$or": [{"lang_fr": True}, {"lang_en": True}]})
    assert not matches_where(meta, {"task_type": {"$in": ["extractive_qa"]}})
    assert not matches_where({}, {"rows": {"$lte": 5}})


def test_size_categories_and_task_types() -> None:
    assert hubindex.size_rows("10K<n<100K") == 10_000
    assert hubindex.size_rows("n<1K") == 0
    assert hubindex.size_rows("1M<n<10M") == 1_000_000
    assert hubindex.size_rows(None) is None
    assert hubindex.hub_task_type(["text-classification"]) == "classification"
    assert hubindex.hub_task_type("task_ids:extractive-qa") == "extractive_qa"
    assert hubindex.hub_task_type(["summarization"]) == "text_generation"
    assert hubindex.hub_task_type([]) == ""


def test_chunks_keep_the_name_in_every_piece() -> None:
    chunks = hubindex.chunk_text("my data.", "One. " * 200, max_chunks=3, size=100)
    assert len(chunks) == 3 and all(c.startswith("my data.") for c in chunks)


@needs_snapshot
def test_build_is_idempotent_and_incremental(built, tmp_path) -> None:
    folder, snap = built
    index = VectorIndex(folder)
    n = index.count("datasets")
    assert n >= 120 and index.count("models") >= 40
    again = hubindex.build(index, "datasets", hubindex.snapshot_entries(snap)["datasets"][1], embed)
    assert again == {"added": 0, "updated": 0, "unchanged": n}
    # a changed description is re-embedded, and only that one
    row = json.loads((snap / "datasets.jsonl").read_text().splitlines()[0])
    row["description"] = "Recipes from grandmothers' kitchens, labelled by cuisine."
    entry = hubindex.dataset_entry(row, "snapshot:snap")
    assert hubindex.build(index, "datasets", [entry], embed) == {"added": 0, "updated": 1, "unchanged": 0}
    top = search(index, "cooking recipes by cuisine", "datasets", k=1)[0]
    assert top.id == row["id"]
    assert index.collection("datasets").count() == len(index.collection("datasets").get(include=[])["ids"])


@needs_snapshot
def test_interrupted_build_resumes_without_redoing(tmp_path) -> None:
    snap = small_snapshot(tmp_path / "snap", n_datasets=60, n_models=0)
    index = VectorIndex(tmp_path / "index")
    calls = {"n": 0}

    def flaky(texts: list[str]) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return embed(texts)

    total, entries = hubindex.snapshot_entries(snap)["datasets"]
    with pytest.raises(KeyboardInterrupt):
        hubindex.build(index, "datasets", entries, flaky, batch_size=16)
    assert index.count("datasets") == 32  # two whole batches, nothing half-written
    stats = hubindex.build(
        index, "datasets", hubindex.snapshot_entries(snap)["datasets"][1], embed, batch_size=16
    )
    assert stats["unchanged"] == 32 and stats["added"] == total - 32
    assert index.count("datasets") == total


@needs_snapshot
def test_search_ranks_and_explains_and_folds_mirrors(built) -> None:
    index = VectorIndex(built[0])
    cands = search(index, "Classify movie reviews as positive or negative", "datasets", k=5)
    ids = [c.id for c in cands]
    assert {"imdb", "rotten_tomatoes", "sst2"} & set(ids[:5])
    imdb = next(c for c in cands if c.id in ("imdb", "linxinyuan/imdb"))
    assert {"imdb", "linxinyuan/imdb"} == {imdb.id, *imdb.duplicates}  # the mirror is folded in, not listed
    assert "maritaca-ai/imdb_pt" not in imdb.duplicates  # a translation is not a mirror
    for c in cands:
        assert "fused" in c.reasons and ("dense" in c.reasons or "bm25" in c.reasons)
    assert cands == sorted(cands, key=lambda c: -c.score)
    spam = search(index, "is this text message junk?", "datasets", k=3)
    assert "sms_spam" in [c.id for c in spam]


@needs_snapshot
def test_modes_and_filters(built) -> None:
    index = VectorIndex(built[0])
    q = "answer a question by extracting a span from a passage"
    for mode in ("dense", "fused", "rerank"):
        assert search(index, q, "datasets", k=5, mode=mode)
    only = search(index, q, "datasets", k=5, filters=SearchFilters(task_type="extractive_qa"))
    assert only and all(c.metadata["task_type"] == "extractive_qa" for c in only)
    assert "squad" in {c.id for c in only} | {d for c in only for d in c.duplicates}
    models = search(
        index, "translate English to German", "models", k=5, filters=SearchFilters(license="apache")
    )
    assert models and all(str(c.metadata.get("license", "")).startswith("apache") for c in models)
    small = search(index, "sentence embeddings", "models", k=5, filters=SearchFilters(max_size=100e6))
    assert all(c.metadata.get("size_bytes", 0) <= 100e6 for c in small)
    with pytest.raises(ValueError):
        search(index, q, "datasets", mode="magic")


def test_same_dataset_rule() -> None:
    desc = "Large Movie Review Dataset. This is a dataset for binary sentiment classification " * 3
    a = {"name": "imdb", "description": desc, "languages": ""}
    assert same_dataset(a, {"name": "someone/imdb", "description": desc, "languages": ""})
    assert not same_dataset(a, {"name": "someone/imdb_pt", "description": desc, "languages": ""})
    assert not same_dataset(a, {"name": "someone/imdb", "description": desc, "languages": "pt"})
    assert same_dataset({"name": "a6kme/minds14-mirror", "description": desc},
                        {"name": "PolyAI/minds14", "description": desc})  # fmt: skip


@needs_snapshot
def test_student_choice_is_local_first_and_fits_memory(built) -> None:
    index = VectorIndex(built[0])
    spec = TaskSpec("Classify tickets as billing or bug", labels=["billing", "bug"])
    cand, why = choose_student(index, spec)
    assert cand.id == "sentence-transformers/all-MiniLM-L6-v2" and "on this machine" in why
    gen = TaskSpec("Turn a record into a sentence", task_type="data_to_text")
    assert choose_student(index, gen)[0].id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert choose_student(None, spec, memory_bytes=10)[1].endswith("built-in default for classification")


def test_student_choice_without_an_index_comes_from_the_catalogue(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))  # no models from this machine's cache
    spec = TaskSpec("Classify tickets as billing or bug", labels=["billing", "bug"])
    cand, why = choose_student(None, spec, memory_bytes=4_000_000_000)
    assert (cand.id, cand.metadata["student"], cand.metadata["local"]) == (
        "sentence-transformers/all-MiniLM-L6-v2", "minilm-lr", True)  # fmt: skip
    assert why.startswith("sentence-transformers/all-MiniLM-L6-v2 (minilm-lr): on this machine, 182 MB")
    qa = choose_student(None, TaskSpec("Answer from the passage", task_type="extractive_qa"))[0]
    assert qa.metadata["student"] == "qa-reader"
    gen = TaskSpec("Turn a record into a sentence", task_type="data_to_text")
    cand, why = choose_student(None, gen, memory_bytes=4_000_000_000)
    assert (cand.id, cand.metadata["student"]) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm-lora")
    cand, why = choose_student(None, gen, memory_bytes=300_000_000)  # nothing fits: the built-in default
    assert cand.id == "HuggingFaceTB/SmolLM2-135M-Instruct" and cand.score == 0.0
    assert why == "HuggingFaceTB/SmolLM2-135M-Instruct: the built-in default for data_to_text"


def test_empty_index_says_how_to_fill_it(tmp_path) -> None:
    with pytest.raises(ConfigError, match="p2m index build"):
        search(VectorIndex(tmp_path / "i"), "anything", "datasets")


def test_corrupt_index_folder_is_a_clear_error(tmp_path) -> None:
    folder = tmp_path / "index"
    folder.mkdir()
    (folder / "keywords.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="unreadable"):
        VectorIndex(folder)
    folder2 = tmp_path / "index2"
    VectorIndex(folder2).close()
    (folder2 / "chroma" / "chroma.sqlite3").write_bytes(b"garbage" * 1000)
    with pytest.raises(ConfigError, match="remove that folder"):
        VectorIndex(folder2).collection("datasets").count()


def test_snapshot_folder_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="neither datasets.jsonl nor models.jsonl"):
        hubindex.snapshot_entries(tmp_path)
    (tmp_path / "datasets.jsonl").write_text('{"id": "a", "description": "x"}\nnot json\n')
    total, entries = hubindex.snapshot_entries(tmp_path)["datasets"]
    with pytest.raises(DataError, match=r"datasets.jsonl:2 is not valid JSON"):
        list(entries)


# -- CLI -------------------------------------------------------------------------------------------
def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code or 0, out.out, out.err


def _cli_ok(args: list[str], capsys) -> str:
    try:
        main(args)
    except SystemExit as e:
        assert not e.code, capsys.readouterr()
    return capsys.readouterr().out


@needs_snapshot
def test_cli_index_build_and_search(tmp_path, capsys) -> None:
    snap = small_snapshot(tmp_path / "snap", n_datasets=30, n_models=10)
    out = _cli_ok(["index", "build", "--snapshot", str(snap), "-q"], capsys)
    assert "snapshot datasets" in out and "added" in out
    out = _cli_ok(["index", "build", "--snapshot", str(snap), "-q"], capsys)
    assert "added      0" in out  # idempotent
    out = _cli_ok(["search", "datasets", "movie review sentiment", "-k", "3", "--json"], capsys)
    rows = json.loads(out)
    assert len(rows) == 3 and {"id", "score", "reasons"} <= set(rows[0])
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]
    out = _cli_ok(["search", "datasets", "movie review sentiment", "-k", "2"], capsys)
    assert " 1. " in out and "why: " in out
    out = _cli_ok(["search", "models", "summarize news", "--license", "apache-2.0", "-k", "2"], capsys)
    assert "1." in out
    n = len((snap / "datasets.jsonl").read_text().splitlines())
    assert f"{n} datasets, 12 models" in _cli_ok(["index", "status"], capsys)  # 10 + the 2 shipped ones


def test_cli_search_errors(tmp_path, capsys) -> None:
    code, _, err = _cli(["search", "datasets", "movie reviews"], capsys)
    assert code == 1 and err.startswith("Error: the search index is empty") and "Traceback" not in err
    code, _, err = _cli(["search", "datasets", "  "], capsys)
    assert code == 2 and "query is empty" in err
    code, _, err = _cli(["index", "build"], capsys)
    assert code == 2 and "--snapshot" in err
    code, _, err = _cli(["index", "build", "--snapshot", str(tmp_path)], capsys)
    assert code == 1 and "neither datasets.jsonl" in err
    code, _, err = _cli(["search", "models", "x", "--max-size", "big"], capsys)
    assert code == 2 and "not a size" in err


def test_open_index_lives_under_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("P2M_HOME", str(tmp_path / "h"))
    index = open_index()
    assert index.folder == tmp_path / "h" / "index"
    assert (
        sqlite3.connect(index.folder / "keywords.sqlite").execute("SELECT COUNT(*) FROM manifest").fetchone()
    )


@needs_snapshot
def test_snapshot_rows_become_the_right_kind_of_entry(tmp_path) -> None:
    snap = small_snapshot(tmp_path / "snap", n_datasets=0, n_models=3)
    found = hubindex.snapshot_entries(snap)
    datasets = list(found["datasets"][1])
    models = list(found["models"][1])
    assert datasets and all(e.kind == "datasets" and "rows" in e.meta for e in datasets)
    assert len(models) == 3 and all(e.kind == "models" and "size_bytes" in e.meta for e in models)
    squad = next(e for e in datasets if e.id == "squad")
    assert squad.meta["task_type"] == "extractive_qa"
