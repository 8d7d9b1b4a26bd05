"""What the sequence students share: their hyper-parameters, CPU threads, bf16, the student folder.

- `SeqTrainConfig`: the generator's and the QA reader's hyper-parameters, saved with every model.
- `auto_threads` / `torch_threads`: torch CPU threads from the cores other processes leave idle.
- `save_folder` / `read_meta`: a student folder is the model + tokenizer in HF format and `p2m_seq.json`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from p2m.errors import ConfigError, DataError
from p2m.tools.trainloop import seed_torch

__all__ = [
    "META_FILE",
    "SeqTrainConfig",
    "auto_threads",
    "bf16_supported",
    "check_pairs",
    "quantize_for_cpu",
    "read_meta",
    "save_folder",
    "seq_setup",
    "torch_threads",
]

META_FILE = "p2m_seq.json"


@dataclass
class SeqTrainConfig:
    """Fine-tuning hyper-parameters for the sequence students, saved with every model.

    Attributes:
        epochs: passes over the training data; the best epoch by validation is kept.
        lr: peak learning rate of the generator's LoRA weights (linear warm-up, then linear decay).
        batch_size: examples per step.
        max_minutes: wall-clock cap on training; the loop stops cleanly and keeps the best so far.
        seed: for initialisation and shuffling.
        lora_r: LoRA rank of the generator (alpha = 2 × r).
        qa_lr: peak learning rate of the QA reader (all its weights are trained).
        qa_min_steps: optimisation steps the QA reader takes at least: with few examples it runs more
            epochs than `epochs` (a new span head learns nothing in the handful of steps of a small set).
        warmup: fraction of steps spent warming up.
        max_input_tokens: prompt tokens kept (longer inputs are cut from the left of the input).
        max_output_tokens: target tokens trained on.
        max_val: validation rows scored per evaluation (the first ones).
        threads: torch CPU threads (0 = `auto_threads()`: the idle cores).
        bf16: train the generator under bfloat16 autocast (None = where the CPU has native bf16;
            measured here: steps 25% faster, same losses).
        layers: transformer layers of the generator kept (0 = all 30); see `keep_layers`.
        full: train every weight of the generator's transformer layers (not the embeddings) instead
            of LoRA adapters: what a cut-down model needs to recover.
    """

    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 8
    max_minutes: float = 8.0
    seed: int = 0
    lora_r: int = 16
    qa_lr: float = 1e-4
    qa_min_steps: int = 60
    warmup: float = 0.06
    max_input_tokens: int = 256
    max_output_tokens: int = 128
    max_val: int = 64
    threads: int = 0
    bf16: bool | None = None
    layers: int = 0
    full: bool = False

    def __post_init__(self) -> None:
        if self.layers < 0 or 0 < self.layers < 4:
            raise ConfigError(f"layers must be 0 (all) or ≥ 4, not {self.layers}")
        for name in ("epochs", "batch_size", "lora_r", "max_input_tokens", "max_output_tokens", "max_val",
                     "qa_min_steps"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1, not {getattr(self, name)}")
        for name in ("lr", "qa_lr"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"{name} must be between 0 and 1, not {getattr(self, name)}")
        if self.max_minutes <= 0:
            raise ConfigError(f"max_minutes must be > 0, not {self.max_minutes}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup must be in [0, 1), not {self.warmup}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _own_running() -> int:
    """This process's threads that are running now (torch's OpenMP workers spin after each op)."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                n += f.read().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            pass
    return n


def _busy_cores() -> int:
    """Other processes' runnable tasks right now: the median of a few reads of /proc/loadavg's running
    count minus this process's running threads, else the 1-minute load average minus this process."""
    try:
        reads = []
        for _ in range(5):
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
            reads.append(max(0, running - max(1, _own_running())))
            time.sleep(0.002)  # auto_threads runs on every predict: a demo's single answer must not wait
        return sorted(reads)[2]
    except (OSError, ValueError, IndexError):
        try:
            return round(os.getloadavg()[0] - 1)
        except OSError:
            return 0


def auto_threads() -> int:
    """CPU threads for torch: the cores other processes leave idle right now, at least 1.

    Measured on a 2-core machine also running two llama.cpp servers: 2 threads made QA fine-tuning
    3× and batched generation 8× slower than 1 thread (OpenMP threads wait on each other). The
    count is read now, not from the load average: that lags by minutes, and right after a busy
    stage (the teacher's requests) it left an idle machine's student on one thread (measured: 200
    vs 105 ms per e2e_nlg example).
    """
    cores = os.cpu_count() or 1
    return max(1, min(cores, cores - _busy_cores()))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """`torch.set_num_threads(n or auto_threads())` for a block, restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n or auto_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seq_setup(cfg: SeqTrainConfig) -> None:
    """Seed torch and set its threads (`cfg.threads`, else `auto_threads()`); the Hub stays offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seed_torch(cfg.seed, cfg.threads or auto_threads())


def bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (then training autocasts and prediction runs in it)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))


def save_folder(path: str | Path, model: Any, tokenizer: Any, meta: dict[str, Any]) -> None:
    """A student folder: model + tokenizer in HF format (safetensors) and `p2m_seq.json`."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _write_meta(folder, meta)


def quantize_for_cpu(model: Any) -> Any:
    """int8 dynamic quantization of the Linear layers for CPU inference.

    Measured here on the AG News development rows: 2.3× faster per example (10.9 → 4.8 ms) for the
    fine-tuned student, accuracy 0.693 → 0.690. The saved model stays float32.
    """
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def check_pairs(rows: list[tuple[str, str]], what: str) -> list[tuple[str, str]]:
    """The (input, output) rows with both parts, as strings; a `DataError` when there are none."""
    kept = [(str(x), str(y)) for x, y in rows if str(x).strip() and str(y).strip()]
    if not kept:
        raise DataError(f"no {what} examples with both an input and an output; generate or add data first")
    return kept


def read_meta(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """A student folder's `p2m_seq.json`; a `ConfigError` when it is missing, unreadable or another kind."""
    file = Path(path) / META_FILE
    if not file.exists():
        raise ConfigError(f"{path} is not a saved sequence student (no {META_FILE})")
    try:
        meta = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {file}: {e}") from e
    if kind and meta.get("kind") != kind:
        raise ConfigError(f"{path} holds a {meta.get('kind')!r} student, not {kind!r}")
    return meta
