"""The one training loop every student uses, in nanoGPT order: batches, step, evaluate, keep the best.

A student's trainer seeds torch (`seed_torch`) before it builds its model — the new head's
initialisation and dropout draw from that seed — then hands the loop its model, optimizer, a
function from a batch of row indexes to the loss, and a function that evaluates the model:

    seed_torch(cfg.seed, threads)
    model = build()
    result = train_loop(model, opt, len(rows), loss_of, evaluate, LoopConfig(...), score=key)

Each epoch the rows are shuffled (`numpy.random.default_rng(seed)`), cut into batches and stepped
(learning rate `lr_at`, gradients clipped, the optimizer's step). The model is evaluated at the end
of every `eval_every`-th epoch (or every `eval_steps` steps), at the last step and when the deadline
stops the loop; the trainable weights of the evaluation with the highest `score` are kept and put
back into the model at the end. Batches for inference are cut by length (`length_batches`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from p2m.errors import ConfigError

__all__ = ["LoopConfig", "LoopResult", "length_batches", "lr_at", "seed_torch", "train_loop"]


def lr_at(step: int, total: int, peak: float, warmup: float) -> float:
    """Linear warm-up to `peak`, then linear decay to 0 — a pure function of the step."""
    warm = max(1, int(total * warmup))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * max(0.0, (total - step) / max(1, total - warm))


def length_batches(texts: list[str], batch_size: int) -> list[list[int]]:
    """Indexes in batches of similar length: less padding, faster CPU inference."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def seed_torch(seed: int, threads: int) -> None:
    """Seed torch and set its CPU threads: the first thing a trainer does, before it builds a model."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "some weights were newly initialized": the new head, expected
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))


@dataclass
class LoopConfig:
    """How the loop runs.

    Attributes:
        epochs: passes over the training rows.
        batch_size: rows per step (the last batch of an epoch may be smaller).
        lr: peak learning rate (linear warm-up, then linear decay to 0 at the last step).
        warmup: fraction of the steps spent warming up.
        seed: for the shuffling of the rows.
        max_minutes: wall-clock cap; the loop stops after the step that passes it, evaluates and
            keeps the best so far (None = no cap).
        eval_every: evaluate at the end of every this many epochs (and at the last one).
        eval_steps: evaluate every this many steps instead (0 = by epochs).
        eval_at_start: evaluate the untrained model first; recorded in the history as epoch 0,
            never kept as the best.
        clip: gradient-norm clip.
        desc: the progress bar's label.
    """

    epochs: int
    batch_size: int
    lr: float
    warmup: float = 0.1
    seed: int = 0
    max_minutes: float | None = None
    eval_every: int = 1
    eval_steps: int = 0
    eval_at_start: bool = False
    clip: float = 1.0
    desc: str = "fine-tune"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1, not {getattr(self, name)}")
        if self.eval_steps < 0:
            raise ConfigError(f"eval_steps must be ≥ 0, not {self.eval_steps}")
        if not 0 < self.lr < 1:
            raise ConfigError(f"lr must be between 0 and 1, not {self.lr}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup must be in [0, 1), not {self.warmup}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"max_minutes must be > 0, not {self.max_minutes}")


@dataclass
class LoopResult:
    """What a run of the loop did: the evaluation kept, when, and the numbers of every evaluation."""

    best: dict[str, Any]
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    stopped_by_time: bool = False

    def meta(self, batch_size: int) -> dict[str, Any]:
        """What a saved student records of its training (its p2m meta file)."""
        return {"best_epoch": self.best_epoch, "history": self.history, "steps": self.steps,
                "seconds": round(self.seconds, 2),
                "examples_per_second": round(self.steps * batch_size / max(self.seconds, 1e-9), 3),
                "stopped_by_time": self.stopped_by_time}  # fmt: skip


def _trainable(model: Any) -> dict[str, Any]:
    """A copy of the weights training changes (all of them, or only the LoRA adapters and the head)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _numbers(evaluation: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in evaluation.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def train_loop(
    model: Any,
    optimizer: Any,
    n_rows: int,
    loss_of: Callable[[Any], Any],
    evaluate: Callable[[int, float], dict[str, Any]],
    cfg: LoopConfig,
    score: Callable[[dict[str, Any]], Any],
    progress: bool = True,
) -> LoopResult:
    """Train `model` on `n_rows` rows; returns the best evaluation, whose weights the model now holds.

    Args:
        model: a torch module; its parameters with `requires_grad` are the ones kept and restored.
        optimizer: over those parameters; the loop sets each group's learning rate every step.
        n_rows: how many training rows there are.
        loss_of: the loss of one batch, given its row indexes (a numpy array).
        evaluate: given the epoch (1-based) and the last step's loss, a dict of numbers and anything
            else the caller wants back in `LoopResult.best` (e.g. its report).
        cfg: epochs, batch size, learning rate, deadline, evaluation schedule.
        score: the key of an evaluation; the highest one is kept (the earlier one on a tie).
        progress: show a tqdm bar.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    if n_rows < 1:
        raise ConfigError("no training rows")
    rng = np.random.default_rng(cfg.seed)
    total = math.ceil(n_rows / cfg.batch_size) * cfg.epochs
    history: list[dict[str, float]] = []
    best: tuple[Any, dict[str, Any], dict[str, Any], int] | None = None  # score, evaluation, weights, epoch

    def judge(epoch: int, steps: int, loss: float) -> None:
        nonlocal best
        evaluation = evaluate(epoch, loss)
        history.append({"epoch": epoch, "steps": steps, **_numbers(evaluation)})
        key = score(evaluation)
        if epoch and (best is None or key > best[0]):
            best = (key, evaluation, _trainable(model), epoch)

    if cfg.eval_at_start:  # epoch 0: the history shows what training changed
        judge(0, 0, float("nan"))
    step, start = 0, time.perf_counter()
    deadline = start + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
    stopped = False
    bar = tqdm(total=total, desc=cfg.desc, unit="step", disable=not progress, leave=False)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = rng.permutation(n_rows)
        for s in range(0, n_rows, cfg.batch_size):
            # step: learning rate, loss, clipped gradients, update
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, cfg.lr, cfg.warmup)
            loss = loss_of(perm[s : s + cfg.batch_size])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
            # evaluate when due (and at the deadline), keep the best
            stopped = time.perf_counter() > deadline
            end_of_epoch = s + cfg.batch_size >= n_rows
            if cfg.eval_steps:
                due = step % cfg.eval_steps == 0
            else:
                due = end_of_epoch and epoch % cfg.eval_every == 0
            if stopped or due or step == total:
                judge(epoch, step, loss.item())
                model.train()
            if stopped:
                break
        if stopped:
            break
    bar.close()
    _, evaluation, weights, best_epoch = best
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in weights:
                p.copy_(weights[n])
    model.eval()
    return LoopResult(evaluation, best_epoch, history, step, time.perf_counter() - start, stopped)
