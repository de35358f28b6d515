import json
import socket
import time

import numpy as np
import pytest
import torch

from conceptlens.backbones import load_backbone
from conceptlens.exceptions import (
    BackboneUnavailableError,
    ConfigError,
    MissingFileError,
    UnknownNameError,
)
from tests.backbones._tiny import TIMM_TOK, VIT_AVG, VIT_TOK, build, images, write_checkpoint


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"), raising=False)
    return tmp_path / "hf"


def _check_message(msg: str, repo: str) -> None:
    assert f"hf download {repo}" in msg
    assert "create_model_and_transforms" in msg
    assert "local-dir:" in msg
    assert "HF_HOME" in msg


@pytest.mark.parametrize("name", ["biomedclip", "quiltnet", "whylesionclip", "hf-hub:org/model"])
def test_hub_backbone_fails_fast_offline(name, empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: calls.append(a))
    t0 = time.perf_counter()
    with pytest.raises(BackboneUnavailableError) as info:
        load_backbone(name, download=True)
    assert time.perf_counter() - t0 < 3.0
    assert calls == []  # HF_HUB_OFFLINE=1: not even a probe
    repo = "org/model" if name.startswith("hf-hub:") else None
    if name == "biomedclip":
        repo = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    if repo:
        _check_message(str(info.value), repo)
    assert "HF_HUB_OFFLINE=1" in str(info.value)


def test_hub_backbone_fails_fast_with_network_closed(empty_hf_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []

    def closed(*args, **kwargs):
        calls.append(args)
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", closed)
    t0 = time.perf_counter()
    with pytest.raises(BackboneUnavailableError) as info:
        load_backbone("biomedclip", download=True)
    assert time.perf_counter() - t0 < 3.0
    assert len(calls) == 1  # one probe, no retries
    _check_message(str(info.value), "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224")
    assert "unreachable" in str(info.value)


def test_hanging_network_is_abandoned(empty_hf_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def hangs(*args, **kwargs):
        time.sleep(4)  # a DNS lookup or SYN that never answers
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hangs)
    t0 = time.perf_counter()
    with pytest.raises(BackboneUnavailableError):
        load_backbone("openai-vit-b-16", download=True)
    assert time.perf_counter() - t0 < 3.0


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test on any attempt to resolve a name or open a connection."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.mark.parametrize("name", ["biomedclip", "openai-vit-b-16", "hf-hub:org/model"])
def test_without_download_nothing_touches_the_network(
    name, empty_hf_cache, monkeypatch, no_network
):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # even when offline mode is not set
    with pytest.raises(BackboneUnavailableError, match=r"download=True.*--download"):
        load_backbone(name)


def test_local_checkpoints_never_touch_the_network(tmp_path, monkeypatch, no_network):
    from safetensors.torch import save_file

    from conceptlens.backbones._minilm import minilm_dir

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    path = write_checkpoint(VIT_AVG, tmp_path / "ckpt.safetensors", seed=1)
    assert load_backbone(path, download=True).encode_images(images(2)).shape == (2, 32)
    # a folder whose text tower is a Hugging Face model: its config and tokenizer are
    # resolved offline first (here a local folder), even with download=True
    hf_cfg = {
        "embed_dim": 32,
        "vision_cfg": VIT_AVG["vision_cfg"],
        "text_cfg": {
            "hf_model_name": str(minilm_dir()),
            "hf_tokenizer_name": str(minilm_dir()),
            "hf_proj_type": "linear",
            "hf_pooler_type": "mean_pooler",
            "context_length": 16,
        },
    }
    import open_clip

    torch.manual_seed(0)
    ref = open_clip.CustomTextCLIP(**json.loads(json.dumps(hf_cfg))).eval()
    folder = tmp_path / "hfdir"
    folder.mkdir()
    save_file(
        {k: v.contiguous() for k, v in ref.state_dict().items()},
        str(folder / "open_clip_model.safetensors"),
    )
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": hf_cfg}))
    bb = load_backbone(f"local-dir:{folder}", download=True)
    assert bb.encode_text(["hair"]).shape == (1, 32)
    assert "HF_HUB_OFFLINE" not in __import__("os").environ


def test_uncached_hf_text_tower_of_a_checkpoint_fails_offline(
    tmp_path, empty_hf_cache, monkeypatch, no_network
):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cfg = {
        "embed_dim": 32,
        "vision_cfg": VIT_AVG["vision_cfg"],
        "text_cfg": {"hf_model_name": "org/not-cached-text-model", "context_length": 16},
    }
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    torch.save({"x": torch.zeros(1)}, tmp_path / "w.pt")
    with pytest.raises(
        BackboneUnavailableError, match=r"(?s)org/not-cached-text-model.*hf download"
    ):
        load_backbone(tmp_path / "w.pt")


def test_weights_option_is_for_synthderm_lit_only(tmp_path):
    path = write_checkpoint(VIT_AVG, tmp_path / "ckpt.safetensors")
    with pytest.raises(ConfigError, match="synthderm-lit"):
        load_backbone(path, weights=path)


def test_unknown_and_missing_specs(tmp_path):
    with pytest.raises(UnknownNameError, match="synthderm-lit"):
        load_backbone("no-such-backbone")
    with pytest.raises(MissingFileError):
        load_backbone(str(tmp_path / "missing.safetensors"))
    with pytest.raises(MissingFileError, match=r"open_clip_config\.json"):
        load_backbone(f"local-dir:{tmp_path}")


@pytest.mark.parametrize("cfg", [VIT_AVG, TIMM_TOK], ids=["vit", "timm"])
def test_safetensors_checkpoint_round_trip(cfg, tmp_path):
    path = write_checkpoint(cfg, tmp_path / "m.safetensors", seed=3)
    bb = load_backbone(path)
    ref = build(cfg, seed=3)
    for k, v in ref.state_dict().items():
        assert torch.equal(bb.model.state_dict()[k], v), k
    imgs = images(3, size=(bb.image_size, bb.image_size))
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(ref.encode_image(bb.preprocess(imgs)), dim=-1)
    np.testing.assert_array_equal(bb.encode_images(imgs), expected.numpy())
    assert bb.name == f"file:{path.resolve()}"


def test_pt_checkpoint_with_sidecar_and_architecture(tmp_path):
    ref = build(VIT_TOK, seed=1)
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "w.pt")
    with pytest.raises(ConfigError, match="architecture"):
        load_backbone(tmp_path / "w.pt")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": VIT_TOK}))
    bb = load_backbone(tmp_path / "w.pt")
    assert torch.equal(bb.model.visual.proj, ref.visual.proj)
    assert bb.image_size == 32


class Evil:
    """Stands for an arbitrary pickled object (could run code when unpickled)."""


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": VIT_TOK}))
    with pytest.raises(ConfigError, match="weights-only"):
        load_backbone(tmp_path / "evil.pt")


def test_local_dir_folder(tmp_path):
    from safetensors.torch import save_file

    ref = build(VIT_AVG, seed=2)
    folder = tmp_path / "hub-download"
    folder.mkdir()
    save_file(ref.state_dict(), str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": VIT_AVG, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}})
    )
    for spec in (f"local-dir:{folder}", folder):
        bb = load_backbone(spec)
        assert bb.config.mean == (0.5, 0.5, 0.5)
        assert torch.equal(bb.model.visual.proj, ref.visual.proj)


def test_mismatched_weights_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"foo": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ConfigError, match="do not match"):
        load_backbone(tmp_path / "x.safetensors", architecture={"model_cfg": VIT_AVG})


@pytest.mark.parametrize(
    "spec",
    [
        "hf-hub:model",  # no org
        "hf-hub:org/re po",  # space
        "hf-hub:../../etc/passwd",
        "hf-hub:org/a/b",  # three parts
        "hf-hub:-org/model",
        "hf-hub:org/model.",
        "hf-hub:org/mo--del",
        "hf-hub:org/" + "m" * 97,
        "hf-hub:org/mod\x1bel",
    ],
)
def test_malformed_hub_id_is_refused_before_any_lookup(spec, monkeypatch):
    calls = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: calls.append(a))
    with pytest.raises(ConfigError, match="not a Hugging Face Hub id"):
        load_backbone(spec, download=True)
    assert calls == []


@pytest.mark.parametrize("spec", ["hf-hub:org/model", "hf-hub:Org_1/Model-2.b", "hf-hub:a/b"])
def test_wellformed_hub_id_reaches_the_hub_lookup(spec, empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneUnavailableError):
        load_backbone(spec, download=True)
