"""synthderm-lit backbone: builder, shipped weights, frozen MiniLM text tower."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from conceptlens.backbones import _synthderm_lit
from conceptlens.backbones._minilm import minilm_dir
from conceptlens.backbones._synthderm_lit import WEIGHTS_PATH, build_synthderm_lit
from conceptlens.exceptions import BackboneUnavailableError


@pytest.fixture(scope="module")
def lit() -> tuple[Any, Any]:
    return build_synthderm_lit()


def test_shipped_weights_are_small_and_image_side_only() -> None:
    from safetensors import safe_open

    assert WEIGHTS_PATH.is_file()
    assert WEIGHTS_PATH.stat().st_size < 10_000_000
    with safe_open(str(WEIGHTS_PATH), "pt") as f:
        keys = list(f.keys())
    assert "logit_scale" in keys and "text.proj.weight" in keys
    assert any(k.startswith("visual.") for k in keys)
    assert not any(k.startswith("text.transformer.") for k in keys)
    record = json.loads(WEIGHTS_PATH.with_suffix(".json").read_text(encoding="utf-8"))
    assert record["data"]["data_seed"] == 0 and record["images_seen"] > 0
    assert len(record["loss_curve"]) > 2


def test_text_tower_frozen_and_equal_to_sentence_transformers(lit: tuple[Any, Any]) -> None:
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    model, tok = lit
    assert not any(p.requires_grad for p in model.text.transformer.parameters())
    ref_weights = load_file(str(minilm_dir() / "model.safetensors"))
    own = model.text.transformer.state_dict()
    for key in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight"):
        assert torch.equal(own[key], ref_weights[key])

    sentences = ["a melanoma with a blue-white veil", "ruler markings and dark corners."]
    st = SentenceTransformer(str(minilm_dir()), device="cpu")
    st_pooled = SentenceTransformer(modules=[st[0], st[1]], device="cpu")  # no Normalize
    expected = st_pooled.encode(sentences, convert_to_tensor=True)
    ids = tok(sentences)
    mask = (ids != 0).long()
    with torch.no_grad():
        pooled = model.text.pooler(
            model.text.transformer(input_ids=ids, attention_mask=mask), mask
        )
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=0)


def test_build_is_deterministic_and_missing_weights_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = build_synthderm_lit(pretrained=False)
    b, _ = build_synthderm_lit(pretrained=False)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    monkeypatch.setattr(_synthderm_lit, "WEIGHTS_PATH", tmp_path / "absent.safetensors")
    with pytest.raises(BackboneUnavailableError, match=r"absent\.safetensors"):
        build_synthderm_lit()
