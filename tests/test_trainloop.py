"""The one training loop: schedule, evaluation points, best-state keeping, the deadline, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2m.errors import ConfigError
from p2m.tools.trainloop import LoopConfig, length_batches, lr_at, seed_torch, train_loop


def _problem(n: int = 24, seed: int = 0):
    """y = 3x - 1 with a frozen extra weight: only `fc` trains."""
    seed_torch(seed, 1)
    x = torch.linspace(-1, 1, n)[:, None]
    model = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1))
    model[1].requires_grad_(False)
    with torch.no_grad():
        model[1].weight.fill_(1.0)
        model[1].bias.fill_(0.0)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)

    def loss_of(idx: np.ndarray) -> torch.Tensor:
        return ((model(x[idx]) - (3 * x[idx] - 1)) ** 2).mean()

    return model, opt, loss_of


def _run(cfg: LoopConfig, scores=None, **kw):
    """The loop on the toy problem; `scores` scripts the evaluations (default: minus the full loss)."""
    model, opt, loss_of = _problem()
    seen: list[dict] = []

    def evaluate(epoch: int, loss: float) -> dict:
        with torch.no_grad():
            full = float(loss_of(np.arange(24)))
        value = scores[len(seen)] if scores else -full
        seen.append({"epoch": epoch, "weights": model[0].weight.item()})
        return {"score": value, "label": "kept with the best"}

    result = train_loop(
        model, opt, 24, loss_of, evaluate, cfg, score=lambda e: e["score"], progress=False, **kw
    )
    return model, result, seen


def test_lr_follows_the_schedule_every_step():
    model, opt, loss_of = _problem()
    lrs = []

    def recording(idx):
        lrs.append(opt.param_groups[0]["lr"])
        return loss_of(idx)

    cfg = LoopConfig(epochs=3, batch_size=8, lr=0.2, warmup=0.2)
    train_loop(
        model, opt, 24, recording, lambda epoch, loss: {"s": 0.0}, cfg, score=lambda e: e["s"], progress=False
    )
    assert lrs == [lr_at(s, 9, 0.2, 0.2) for s in range(9)]


def test_it_learns_and_evaluates_at_each_epoch_end():
    model, result, seen = _run(LoopConfig(epochs=4, batch_size=4, lr=0.5, warmup=0.0))
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert [h["steps"] for h in result.history] == [6, 12, 18, 24]
    assert result.steps == 24 and not result.stopped_by_time and result.seconds > 0
    assert result.history[-1]["score"] > result.history[0]["score"]
    assert "label" not in result.history[0] and result.best["label"] == "kept with the best"
    assert model[0].weight.item() == pytest.approx(3.0, abs=0.2)
    assert not model.training


def test_the_best_evaluation_is_put_back_and_ties_keep_the_earlier_one():
    model, result, seen = _run(LoopConfig(epochs=4, batch_size=8, lr=0.5), scores=[0.1, 0.7, 0.7, 0.2])
    assert result.best_epoch == 2 and result.best["score"] == 0.7
    assert model[0].weight.item() == seen[1]["weights"] != seen[3]["weights"]
    assert model[1].weight.item() == 1.0  # frozen weights are left alone


def test_the_start_evaluation_is_history_only():
    _, result, seen = _run(LoopConfig(epochs=2, batch_size=12, lr=0.1, eval_at_start=True), scores=[9, 1, 2])
    assert [h["epoch"] for h in result.history] == [0, 1, 2] and result.history[0]["steps"] == 0
    assert result.best_epoch == 2  # epoch 0 scored 9 but is the untrained model


def test_evaluation_every_n_epochs_and_every_n_steps_and_always_at_the_end():
    _, result, _ = _run(LoopConfig(epochs=5, batch_size=8, lr=0.1, eval_every=2))
    assert [h["epoch"] for h in result.history] == [2, 4, 5]
    _, result, _ = _run(LoopConfig(epochs=2, batch_size=8, lr=0.1, eval_steps=4))
    assert [h["steps"] for h in result.history] == [4, 6]
    assert [h["epoch"] for h in result.history] == [2, 2]


def test_the_deadline_stops_after_a_step_and_keeps_what_it_has():
    _, result, seen = _run(LoopConfig(epochs=50, batch_size=4, lr=0.1, max_minutes=1e-9))
    assert result.stopped_by_time and result.steps == 1 and result.best_epoch == 1
    assert len(result.history) == 1


def test_the_same_seed_gives_the_same_weights_and_another_seed_another_order():
    def weights(seed: int) -> float:
        model, opt, loss_of = _problem()
        cfg = LoopConfig(epochs=2, batch_size=5, lr=0.3, seed=seed)
        train_loop(
            model,
            opt,
            24,
            loss_of,
            lambda epoch, loss: {"s": -loss},
            cfg,
            score=lambda e: e["s"],
            progress=False,
        )
        return model[0].weight.item()

    assert weights(0) == weights(0) != weights(1)


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", 0), ("batch_size", 0), ("eval_every", 0), ("eval_steps", -1), ("lr", 0.0), ("warmup", 1.0),
     ("max_minutes", 0.0)],
)  # fmt: skip
def test_config_names_the_bad_field(field, value):
    with pytest.raises(ConfigError, match=field):
        LoopConfig(**{"epochs": 1, "batch_size": 1, "lr": 0.1, field: value})


def test_no_rows_is_a_config_error():
    model, opt, loss_of = _problem()
    with pytest.raises(ConfigError, match="no training rows"):
        train_loop(
            model, opt, 0, loss_of, lambda epoch, loss: {}, LoopConfig(1, 1, 0.1), score=len, progress=False
        )


def test_length_batches_group_similar_lengths_and_cover_every_index():
    texts = ["aaaa", "a", "aaa", "aa", "aaaaa"]
    assert length_batches(texts, 2) == [[1, 3], [2, 0], [4]]
