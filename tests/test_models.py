"""The catalogue of student candidates: shipped, HF cache, index and Hub models; licence, memory, fetching."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from huggingface_hub import constants
from huggingface_hub.utils import _http
from safetensors.numpy import save as safetensors_bytes

from p2m.errors import ConfigError, TaskError
from p2m.memory.vectors import VectorIndex
from p2m.tools import hubindex
from p2m.tools.models import DEFAULT_LICENCES, MINILM, SMOLLM, ModelCandidate, candidates, fetch_model
from p2m.tools.types import TASK_TYPES
from tests.fakehub import FakeHub
from tests.helpers import closed_port

GEN = ("text_to_code", "data_to_text", "text_generation")
SHIPPED_STUDENTS = {
    "classification": ["minilm-lr", "minilm-ft", "smollm-cls"],
    "extractive_qa": ["qa-reader"],
    **dict.fromkeys(GEN, ["smollm-lora", "smollm-cut"]),
}
BERT = {"model_type": "bert", "architectures": ["BertModel"]}
QWEN = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}


@pytest.fixture(autouse=True)
def hf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty HF cache per test (the machine's own cache must not leak in)."""
    cache = tmp_path / "hf_cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def weights(**shapes: tuple[int, ...]) -> bytes:
    return safetensors_bytes({name: np.zeros(shape, dtype=np.float32) for name, shape in shapes.items()})


def card(licence: str) -> str:
    return f"---\nlicense: {licence}\n---\n# A model\n"


def cached(cache: Path, repo_id: str, files: dict[str, bytes | str | dict], kind: str = "models") -> Path:
    """A repo in the HF cache layout (snapshots/<sha>/..., refs/main), as snapshot_download leaves it."""
    sha = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / f"{kind}--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    for name, data in files.items():
        data = json.dumps(data) if isinstance(data, dict) else data
        (snap / name).write_bytes(data.encode() if isinstance(data, str) else data)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return snap


def by_id(cands: list[ModelCandidate]) -> dict[str, list[ModelCandidate]]:
    out: dict[str, list[ModelCandidate]] = {}
    for c in cands:
        out.setdefault(c.id, []).append(c)
    return out


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_shipped_candidates_serve_every_task_type_offline(task_type: str) -> None:
    cands = candidates(task_type, online=False, memory_bytes=8_000_000_000)
    fitting = [c for c in cands if c.fits]
    assert [c.student for c in fitting] == SHIPPED_STUDENTS[task_type]
    assert all(c.source == "shipped" and Path(c.path).exists() and c.licence == "apache-2.0" for c in fitting)
    assert all(task_type in c.task_types and c.train_bytes and c.why_not is None for c in fitting)
    others = [c for c in cands if not c.fits]
    assert all(c.student is None and c.why_not for c in others)  # e.g. MiniLM cannot generate text
    assert {c.id for c in cands} == {MINILM, SMOLLM} and cands.index(fitting[-1]) < len(fitting)


def test_unknown_task_type_is_a_task_error() -> None:
    with pytest.raises(TaskError, match="unknown task type 'summarise'.*classification"):
        candidates("summarise", online=False)


def test_memory_filtering_says_what_training_needs() -> None:
    cands = candidates("classification", online=False, memory_bytes=200_000_000)
    lr, ft, cls = cands
    assert (lr.student, lr.fits, lr.why_not) == ("minilm-lr", True, None)
    assert (ft.student, ft.fits) == ("minilm-ft", False)
    assert ft.why_not == "needs 545 MB to train, 200 MB available"  # 22.7M float32 weights × 6
    assert cls.student == "smollm-cls" and cls.why_not == "needs 1.3 GB to train, 200 MB available"
    assert not any(c.fits for c in candidates("text_generation", online=False, memory_bytes=10))


def test_cache_scan_reads_config_licence_and_safetensors(hf_cache: Path) -> None:
    small = weights(embed=(100, 16), dense=(16, 16))  # 1,856 parameters
    cached(
        hf_cache,
        "org/small-bert",
        {"config.json": BERT, "model.safetensors": small, "README.md": card("mit")},
    )
    big = weights(embed=(1000, 64))
    cached(
        hf_cache, "org/big-bert", {"config.json": BERT, "model.safetensors": big, "README.md": card("mit")}
    )
    cached(hf_cache, "org/tiny-qwen", {"config.json": QWEN, "model.safetensors": small})
    cached(hf_cache, "org/pickled", {"config.json": BERT, "pytorch_model.bin": b"\x80\x04pickle"})
    cached(hf_cache, "org/t5", {"config.json": {"model_type": "t5"}, "model.safetensors": small})
    cached(hf_cache, MINILM, {"config.json": BERT, "model.safetensors": small})  # shipped wins
    cached(hf_cache, "org/some-data", {"train.csv": "text,label\n"}, kind="datasets")

    cands = candidates("classification", online=False, memory_bytes=8_000_000_000)
    found = by_id(cands)
    assert set(found) == {MINILM, SMOLLM, "org/small-bert", "org/big-bert", "org/tiny-qwen", "org/pickled",
                          "org/t5"}  # fmt: skip
    assert [c.source for c in found[MINILM]] == ["shipped", "shipped"]
    [bert] = found["org/small-bert"]
    assert (bert.student, bert.source, bert.fits, bert.params, bert.licence) == (
        "encoder-ft", "cache", True, 1856, "mit")  # fmt: skip
    assert Path(bert.path, "config.json").is_file() and bert.task_types == ["classification", "extractive_qa"]
    order = [c.id for c in cands if c.fits]  # shipped first, then the smaller
    assert order.index(SMOLLM) < order.index("org/small-bert") < order.index("org/big-bert")
    assert found["org/tiny-qwen"][0].why_not.startswith("a decoder (qwen2); classification trains an encoder")
    assert found["org/tiny-qwen"][0].note.startswith("licence unknown")
    assert (
        found["org/pickled"][0].why_not == "only pickled weights (pytorch_model.bin), which p2m does not load"
    )
    assert "an encoder-decoder (t5)" in found["org/t5"][0].why_not
    assert all(not c.fits for c in cands[cands.index(found["org/tiny-qwen"][0]) :])  # the misfits come last

    qa = by_id(candidates("extractive_qa", online=False))["org/small-bert"][0]
    assert qa.student == "qa-reader" and qa.fits
    gen = by_id(candidates("data_to_text", online=False))["org/tiny-qwen"][0]
    assert not gen.fits and "SmolLM2-135M only" in gen.why_not


def test_licence_filtering(hf_cache: Path) -> None:
    w = weights(x=(8, 8))
    for rid, lic in [("org/nc", "cc-by-nc-4.0"), ("org/llama", "llama3.1"), ("org/bsd", "bsd-3-clause"),
                     ("org/other", "other")]:  # fmt: skip
        cached(hf_cache, rid, {"config.json": BERT, "model.safetensors": w, "README.md": card(lic)})
    found = by_id(candidates("classification", online=False))
    assert found["org/nc"][0].why_not == "licence cc-by-nc-4.0 is not in the allowed list"
    assert found["org/llama"][0].why_not == "licence llama3.1 is not in the allowed list"  # community licence
    assert found["org/bsd"][0].fits and found["org/bsd"][0].note is None
    other = found["org/other"][0]
    assert (
        other.fits and other.note == "licence other: read the model card before shipping a model built on it"
    )
    allowed = by_id(candidates("classification", online=False, licences=[*DEFAULT_LICENCES, "cc-by-nc-*"]))
    assert allowed["org/nc"][0].fits and not allowed["org/llama"][0].fits
    only_mit = by_id(candidates("classification", online=False, licences=["mit"]))
    assert only_mit[MINILM][0].why_not == "licence apache-2.0 is not in the allowed list"


def test_fetch_offline_says_what_to_do(hf_cache: Path) -> None:
    with pytest.raises(ConfigError, match=r"org/absent is not in the Hugging Face cache .* HF_HUB_OFFLINE=0"):
        fetch_model("org/absent")
    snap = cached(hf_cache, "org/here", {"config.json": BERT, "model.safetensors": weights(x=(2, 2))})
    assert fetch_model("org/here") == snap  # offline, a cached model is simply found


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """The Hub client online against a fake Hub holding only the repos a test adds (via HF_ENDPOINT)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(_http, "time", SimpleNamespace(sleep=lambda s: None))
    with FakeHub(snapshot=tmp_path / "no-snapshot") as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A 2-layer, 32-wide BERT and a WordPiece tokenizer: `.files` of a Hub repo, `.params`."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = "[PAD] [UNK] [CLS] [SEP] [MASK] the a film great dull plot bill bug pay ##s ##ed".split()
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64)  # fmt: skip
    model = BertModel(config)
    model.save_pretrained(folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files["README.md"] = card("apache-2.0").encode()
    return SimpleNamespace(files=files, params=sum(p.numel() for p in model.parameters()))


def test_fetch_from_the_hub_then_listed_from_the_cache(hub: FakeHub, tiny_bert: SimpleNamespace) -> None:
    hub.add_model_files("p2m-test/tiny-bert", {**tiny_bert.files, "pytorch_model.bin": b"\x80\x04pickle"},
                        pipeline_tag="feature-extraction")  # fmt: skip
    path = fetch_model("p2m-test/tiny-bert")
    assert (path / "model.safetensors").is_file() and (path / "vocab.txt").is_file()
    assert not (path / "pytorch_model.bin").exists()  # never downloaded beside safetensors
    assert not [p for m, p in hub.requests if p.endswith("pytorch_model.bin")]

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "some weights were newly initialised": the new head, as expected
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        logits = model(**tokenizer(["the film was great"], return_tensors="pt")).logits
    assert logits.shape == (1, 3)

    [c] = by_id(candidates("classification", online=False))["p2m-test/tiny-bert"]
    assert (c.source, c.student, c.fits, Path(c.path)) == ("cache", "encoder-ft", True, path)
    assert c.params == tiny_bert.params == sum(p.numel() for p in model.bert.parameters())
    assert c.licence == "apache-2.0" and c.train_bytes == c.params * 4 * 6


def test_pickled_only_repo_is_refused(hub: FakeHub) -> None:
    files = {"config.json": json.dumps(BERT), "pytorch_model.bin": b"\x80\x04pickle", "vocab.txt": "a\n"}
    hub.add_model_files("p2m-test/pickled", files)
    with pytest.raises(ConfigError, match=r"only pickled weights \(pytorch_model.bin\).*safetensors only"):
        fetch_model("p2m-test/pickled")
    assert not [p for _, p in hub.requests if "/resolve/" in p]  # refused before any download
    with pytest.raises(ConfigError, match="no model p2m-test/absent at http://127.0.0.1"):
        fetch_model("p2m-test/absent")


def fake_embed(texts: list[str]) -> np.ndarray:
    """Deterministic unit vectors from the words (no model): enough to rank a two-entry index."""
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 384] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_index_and_hub_candidates(hub: FakeHub, tiny_bert: SimpleNamespace, tmp_path: Path) -> None:
    hub.add_model_files(
        "p2m-test/tiny-bert", tiny_bert.files, pipeline_tag="text-classification", downloads=9
    )
    gpt = {
        "config.json": json.dumps(QWEN),
        "model.safetensors": weights(x=(8, 8)),
        "README.md": card("cc-by-nc-4.0"),
    }
    hub.add_model_files("p2m-test/tiny-qwen", gpt, pipeline_tag="text-generation")
    index = VectorIndex(tmp_path / "index")
    row = {"id": "org/indexed-roberta", "pipeline_tag": "fill-mask", "license": "mit", "params": 125_000_000,
           "size_bytes": 500_000_000, "description": "RoBERTa base encoder"}  # fmt: skip
    hubindex.build(index, "models", [hubindex.model_entry(row, "hub")], fake_embed)

    online = by_id(candidates("classification", index, online=True, embed_fn=fake_embed))
    [bert] = online["p2m-test/tiny-bert"]
    assert (bert.source, bert.path, bert.student, bert.fits, bert.licence) == (
        "hub", None, "encoder-ft", True, "apache-2.0")  # fmt: skip
    assert bert.params == tiny_bert.params and bert.size_bytes == tiny_bert.params * 4  # from `expand`
    [roberta] = online["org/indexed-roberta"]
    assert (roberta.source, roberta.architecture, roberta.student, roberta.fits) == (
        "index", "encoder", "encoder-ft", True)  # fmt: skip
    assert "p2m-test/tiny-qwen" not in online  # listed for text-generation, not classification
    gen = by_id(candidates("text_generation", online=True))["p2m-test/tiny-qwen"][0]
    assert gen.why_not == (
        "a decoder (qwen2); the generation students are trained from SmolLM2-135M only; "
        "licence cc-by-nc-4.0 is not in the allowed list"
    )

    before = len(hub.requests)
    offline = by_id(candidates("classification", index, online=False, embed_fn=fake_embed))
    assert len(hub.requests) == before and "p2m-test/tiny-bert" not in offline  # the Hub is not asked
    assert offline["org/indexed-roberta"][0].why_not == "not on this machine and offline"
    small = by_id(
        candidates("classification", index, online=True, memory_bytes=1_000_000_000, embed_fn=fake_embed)
    )
    assert small["org/indexed-roberta"][0].why_not == "needs 3.0 GB to train, 1.0 GB available"


def test_an_unreachable_hub_leaves_the_local_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    cands = candidates("classification", online=True)
    assert {c.source for c in cands} == {"shipped"} and cands[0].fits
    assert time.monotonic() - start < 10  # one refused request, not huggingface_hub's five retries
