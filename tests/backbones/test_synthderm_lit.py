"""synthderm-lit backbone: builder, shipped weights, frozen MiniLM text tower."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
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


def _flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))


def test_shipped_weights_are_checked_against_the_recorded_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conceptlens.exceptions import IntegrityError

    record = json.loads(_synthderm_lit.WEIGHTS_RECORD.read_text(encoding="utf-8"))
    assert _synthderm_lit.shipped_weights_sha256() == record["weights_sha256"]
    copy = tmp_path / "synthderm-lit.safetensors"
    copy.write_bytes(WEIGHTS_PATH.read_bytes())
    _flip_byte(copy, copy.stat().st_size // 2)  # same size, one tensor byte changed
    monkeypatch.setattr(_synthderm_lit, "WEIGHTS_PATH", copy)
    with pytest.raises(IntegrityError, match=r"sha256 .* differs .* recorded in"):
        build_synthderm_lit()


def _user_weights(tmp_path: Path, edit: Any) -> Path:
    from safetensors.torch import load_file, save_file

    state = load_file(str(WEIGHTS_PATH))
    edit(state)
    out = tmp_path / "mine.safetensors"
    save_file(state, str(out))
    return out


def test_user_weights_with_nan_or_wrong_shape_are_refused(tmp_path: Path) -> None:
    from conceptlens.exceptions import IntegrityError

    def nan(state: dict) -> None:
        state["visual.proj"] = torch.full_like(state["visual.proj"], float("nan"))

    def shape(state: dict) -> None:
        state["text.proj.weight"] = state["text.proj.weight"][:10]

    with pytest.raises(IntegrityError, match=r"visual\.proj.*NaN or infinite"):
        build_synthderm_lit(weights=_user_weights(tmp_path, nan))
    with pytest.raises(IntegrityError, match=r"wrong shape.*text\.proj\.weight"):
        build_synthderm_lit(weights=_user_weights(tmp_path, shape))
    (tmp_path / "trunc.safetensors").write_bytes(WEIGHTS_PATH.read_bytes()[:5000])
    with pytest.raises(IntegrityError, match="not a readable safetensors"):
        build_synthderm_lit(weights=tmp_path / "trunc.safetensors")


def test_load_backbone_with_user_weights(tmp_path: Path) -> None:
    from conceptlens.backbones import load_backbone

    def scale(state: dict) -> None:
        state["visual.proj"] = state["visual.proj"] * 2 + 0.01

    path = _user_weights(tmp_path, scale)
    shipped = load_backbone("synthderm-lit")
    mine = load_backbone("synthderm-lit", weights=path)
    assert mine.weights_path == path
    assert mine.fingerprint != shipped.fingerprint
    assert mine.spec is not None and mine.spec["weights"] == str(path)
    img = np.random.default_rng(0).integers(0, 255, (2, 96, 96, 3), dtype=np.uint8)
    assert not np.allclose(mine.encode_images(img), shipped.encode_images(img))
    # the text tower (MiniLM) is the same
    np.testing.assert_allclose(mine.encode_text(["hair"]), shipped.encode_text(["hair"]))


def test_loading_does_not_leave_hf_offline_set(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import huggingface_hub.constants as consts

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(consts, "HF_HUB_OFFLINE", False)
    build_synthderm_lit(pretrained=False)
    assert "HF_HUB_OFFLINE" not in os.environ
    assert "TRANSFORMERS_OFFLINE" not in os.environ
    assert consts.HF_HUB_OFFLINE is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # a user's own value is restored as it was
    build_synthderm_lit(pretrained=False)
    assert os.environ["HF_HUB_OFFLINE"] == "0"


def test_fingerprint_covers_the_minilm_files(monkeypatch: pytest.MonkeyPatch) -> None:
    from conceptlens.backbones import _loading
    from conceptlens.backbones._backbone import Backbone

    loaded = _loading.build_model(_loading.resolve_spec("synthderm-lit")[0])
    assert set(loaded.extra_hashes) == {"minilm"}
    a = Backbone(loaded).fingerprint
    loaded.extra_hashes = {"minilm": "0" * 64}
    assert Backbone(loaded).fingerprint != a


def test_weights_that_are_not_a_file_are_named_so(tmp_path: Path) -> None:
    """`--weights /dev/zero` (or a folder) said the weights were missing."""
    from conceptlens.exceptions import BackboneUnavailableError

    with pytest.raises(BackboneUnavailableError, match="is a folder, FIFO or device"):
        build_synthderm_lit(weights=tmp_path)
    with pytest.raises(BackboneUnavailableError, match="are missing"):
        build_synthderm_lit(weights=tmp_path / "absent.safetensors")
