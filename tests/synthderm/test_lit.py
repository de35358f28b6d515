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


def test_training_normalisation_matches_the_backbone_encoder(
    lit: tuple[Any, Any], sample: Any
) -> None:
    # the training pipeline's image normalisation and the Backbone's preprocessing give the
    # same embeddings (96 px images are not resampled), so training and scoring agree
    from conceptlens.synthderm._evaluate_lit import lit_backbone
    from conceptlens.synthderm._train_lit import _normalize_images

    model, tok = lit
    x = _normalize_images(torch.from_numpy(sample.images[:8]), torch.device("cpu"))
    with torch.no_grad():
        direct = model.encode_image(x, normalize=True).numpy()
    emb = lit_backbone().encode_images(sample.images[:8])
    assert emb.shape == (8, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, direct, atol=1e-5)
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


def test_quality_subset_on_fresh_seed() -> None:
    from conceptlens.synthderm._evaluate_lit import evaluate_lit

    res = evaluate_lit(n=300, n_probe_train=0)  # the shipped weights, through Backbone
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


def test_training_output_never_goes_into_the_package(tmp_path: Path) -> None:
    import conceptlens
    from conceptlens.exceptions import ConfigError
    from conceptlens.synthderm._train_lit import refit_projection, train_lit

    inside = Path(conceptlens.__file__).parent / "backbones" / "weights"
    with pytest.raises(ConfigError, match="inside the conceptlens package"):
        train_lit(inside, max_steps=1)
    with pytest.raises(ConfigError, match="inside the conceptlens package"):
        refit_projection(inside, WEIGHTS_PATH, n_chunks=1)


def test_lit_loss_without_concepts_is_the_clip_loss() -> None:
    # independent reference: with distinct captions the contrastive term is CLIP's
    # symmetric cross-entropy over the batch
    import torch.nn.functional as F

    from conceptlens.synthderm._train_lit import _lit_loss

    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    scale = torch.tensor(float(np.log(20.0)))
    losses = _lit_loss(
        img,
        txt,
        torch.arange(6),
        torch.zeros(6, 3),
        logit_scale=scale,
        concept_text=F.normalize(torch.randn(3, 8, generator=g), dim=-1),
        concept_log_scale=torch.zeros(3),
        concept_bias=torch.zeros(3),
        concept_weight=0.0,
    )
    logits = 20.0 * img @ txt.t()
    target = torch.arange(6)
    clip = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    torch.testing.assert_close(losses["loss"], clip)
    torch.testing.assert_close(losses["contrastive"], clip)


def test_schedule_warms_up_then_decays_to_two_percent() -> None:
    from conceptlens.synthderm._train_lit import _lr_at

    assert _lr_at(1.0, 0, 0.0, 1.0, warmup_steps=4) == 0.25
    assert _lr_at(1.0, 3, 0.0, 1.0, warmup_steps=4) == 1.0
    assert _lr_at(1.0, 10, 0.0) == pytest.approx(1.0)
    assert _lr_at(1.0, 10, 0.5) == pytest.approx(0.51)
    assert _lr_at(1.0, 10, 1.0) == pytest.approx(0.02)
    assert _lr_at(2.0, 50, 50, 100) == pytest.approx(_lr_at(2.0, 50, 0.5))


def test_cli_defaults_come_from_one_table() -> None:
    from click.testing import CliRunner

    from conceptlens.synthderm._cli_lit import (
        STAGE1_DEFAULTS,
        stage1_defaults,
        train_synthderm_lit,
    )

    assert stage1_defaults(False)["batch_size"] == STAGE1_DEFAULTS["batch_size"][1] == 128
    assert stage1_defaults(True)["lr"] == STAGE1_DEFAULTS["lr"][0]
    help_text = CliRunner().invoke(train_synthderm_lit, ["--help"]).output
    assert "Default 1024 on CUDA, 128 on CPU." in help_text


def test_evaluation_of_a_training_output(tmp_path: Path) -> None:
    """A trained file is evaluated through Backbone (fingerprinted by its own hash)."""
    from conceptlens._io import sha256_file
    from conceptlens.synthderm._evaluate_lit import evaluate_lit, lit_backbone
    from conceptlens.synthderm._train_lit import refit_projection

    refit_projection(tmp_path, WEIGHTS_PATH, n_chunks=1, chunk_size=32, steps=100, quiet=True)
    path = tmp_path / "synthderm-lit.safetensors"
    trained = lit_backbone(path)
    assert trained.weights_path == path and sha256_file(path) != sha256_file(WEIGHTS_PATH)
    res = evaluate_lit(trained, n=100, n_probe_train=0)
    assert res["setup"]["backbone_fingerprint"] == trained.fingerprint
    assert res["zero_shot"]["cosine"]["mean"] > 0.6
