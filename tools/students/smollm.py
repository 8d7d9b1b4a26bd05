"""SmolLM2-135M as trainable transformers weights: read from the GGUF the embedded teacher runs, cut to
fewer layers when asked. The generator and the SmolLM2 classifier start from it."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

from p2m.errors import ConfigError

__all__ = ["LORA_TARGETS", "base_generator", "keep_layers"]

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


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
