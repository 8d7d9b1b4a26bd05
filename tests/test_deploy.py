"""Deploying a candidate's folder: weights are hard-linked, not copied, and stay the deployed ones."""

from __future__ import annotations

import shutil

from p2m.tools.deploy import copy_model


def _candidate(folder, weights: bytes):
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub").mkdir()
    (folder / "sub" / "tokenizer.json").write_text("{}")
    return folder


def test_weights_are_linked_the_rest_copied_and_a_retrained_candidate_leaves_the_model(tmp_path):
    cand = _candidate(tmp_path / "candidates" / "finetune", b"old weights")
    model = copy_model(cand, tmp_path / "model")
    assert (model / "model.safetensors").stat().st_ino == (cand / "model.safetensors").stat().st_ino
    assert (model / "config.json").stat().st_ino != (cand / "config.json").stat().st_ino
    assert (model / "sub" / "tokenizer.json").read_text() == "{}"
    # a candidate is retrained into a fresh folder (pipeline._record removes the old one first)
    shutil.rmtree(cand)
    _candidate(cand, b"new weights")
    assert (model / "model.safetensors").read_bytes() == b"old weights"
    # deploying again replaces the model folder
    (model / "stale.txt").write_text("x")
    copy_model(cand, model)
    assert (model / "model.safetensors").read_bytes() == b"new weights"
    assert not (model / "stale.txt").exists()
