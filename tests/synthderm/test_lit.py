"""synthderm-lit training and evaluation: tiny runs of both stages, quality subset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conceptlens.backbones._minilm import minilm_dir
from conceptlens.backbones._synthderm_lit import WEIGHTS_PATH, build_synthderm_lit


@pytest.fixture(scope="module")
def lit() -> tuple[Any, Any]:
    return build_synthderm_lit()


@pytest.fixture(scope="module")
def sample() -> Any:
    from conceptlens.synthderm._evaluate_lit import EVAL_SEED
    from conceptlens.synthderm._generator import SynthDerm

    return SynthDerm("iid", image_size=96).generate(300, seed=EVAL_SEED)


def test_builder_embeddings(lit: tuple[Any, Any], sample: Any) -> None:
    from conceptlens.synthderm._evaluate_lit import embed_images

    model, tok = lit
    emb = embed_images(model, sample.images[:8])
    assert emb.shape == (8, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        raw = model.encode_text(tok(["hair", "purple ink"]))
    assert raw.shape == (2, 384) and torch.isfinite(raw).all() and (raw.norm(dim=1) > 0).all()
    assert model.visual.conv1.__class__.__name__ == "ConvStem"


def test_patch_tokens_live_in_joint_space(lit: tuple[Any, Any], sample: Any) -> None:
    from conceptlens.synthderm._train_lit import _normalize_images

    model, _ = lit
    x = _normalize_images(torch.from_numpy(sample.images[:4]), torch.device("cpu"))
    model.visual.output_tokens = True
    try:
        with torch.no_grad():
            pooled, tokens = model.visual(x)
    finally:
        model.visual.output_tokens = False
    assert tokens.shape == (4, 144, 192)  # 12 x 12 grid
    projected = tokens @ model.visual.proj
    torch.testing.assert_close(projected.mean(1), pooled, atol=1e-5, rtol=1e-5)


def test_quality_subset_on_fresh_seed(lit: tuple[Any, Any]) -> None:
    from conceptlens.synthderm._evaluate_lit import evaluate_lit

    model, tok = lit
    res = evaluate_lit(model, tok, n=300, n_probe_train=0)
    zs = res["zero_shot"]["cosine"]
    assert zs["artifact_min"] >= 0.9, zs["per_concept"]
    assert zs["mean"] >= 0.95, zs["per_concept"]
    assert res["paraphrase"]["cosine"]["mean"] >= 0.85, res["paraphrase"]["cosine"]


def test_training_loop_reduces_loss(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from conceptlens.synthderm._cli_lit import train_synthderm_lit

    out = tmp_path / "run"
    result = CliRunner().invoke(
        train_synthderm_lit,
        [
            *("--out", str(out), "--max-steps", "6", "--batch-size", "16", "--device", "cpu"),
            *("--num-workers", "0", "--val-size", "48", "--log-every", "2"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "synthderm-lit.json").read_text(encoding="utf-8"))
    curve = record["loss_curve"]
    assert record["steps"] == 6 and record["images_seen"] == 96
    assert curve[-1]["loss"] < curve[0]["loss"]
    model, _ = build_synthderm_lit(weights=out / "synthderm-lit.safetensors")
    assert not model.training


def test_make_chunk_keeps_main_process_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process chunk generation (num_workers=0, stage-2 refit) must not change the
    # caller's torch thread count; only pool workers are limited to one thread.
    from conceptlens.backbones._synthderm_lit import CONTEXT_LENGTH
    from conceptlens.synthderm import _train_lit

    monkeypatch.setattr(_train_lit, "_WORKER_STATE", {})  # first call in this process
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        chunk = _train_lit._make_chunk(0, 0, 4, str(minilm_dir()), CONTEXT_LENGTH)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert chunk["index"] == 0 and chunk["images"].shape[0] == 4


def test_stage2_refit_locks_text_projection(tmp_path: Path) -> None:
    from conceptlens.synthderm._train_lit import refit_projection

    record = refit_projection(
        tmp_path, WEIGHTS_PATH, n_chunks=1, chunk_size=32, steps=200, batch_size=32, quiet=True
    )
    curve = record["stage2"]["loss_curve"]
    assert len(curve) == 2 and curve[-1]["loss"] <= curve[0]["loss"]
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "synthderm-lit.safetensors"))
    torch.testing.assert_close(state["text.proj.weight"].float(), torch.eye(384))
    assert record["stage2"]["data"]["images"] == 32


def test_refit_command_runs_stage2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from conceptlens.cli import main

    result = CliRunner().invoke(
        main,
        ["--quiet", "backbone", "refit-synthderm-lit", "--init", str(WEIGHTS_PATH),
         "--out", str(tmp_path), "--chunks", "1", "--chunk-size", "32", "--steps", "50"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "32 images" in result.output
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "synthderm-lit.safetensors"))
    torch.testing.assert_close(state["text.proj.weight"].float(), torch.eye(384))
