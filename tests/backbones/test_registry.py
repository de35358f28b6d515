import json

import pytest

from conceptlens.backbones import BackboneConfig, get_backbone_config, list_backbones
from conceptlens.exceptions import ConfigError, UnknownNameError

EXPECTED = {
    "synthderm-lit",
    "biomedclip",
    "openai-vit-b-16",
    "quiltnet",
    "whylesionclip",
    "whyxrayclip",
    "bmca-clip",
}


def test_registry_lists_every_shipped_config():
    assert set(list_backbones()) >= EXPECTED
    assert list_backbones() == sorted(list_backbones())


def test_known_configs_agree_with_open_clip_and_the_shipped_weights():
    """Each config checked against an outside source: open_clip's own registry and
    constants, the hub id it links to, and the shapes stored in the shipped weights."""
    import math

    import open_clip
    from safetensors import safe_open

    from conceptlens.backbones._synthderm_lit import WEIGHTS_PATH

    for name in EXPECTED:
        cfg = get_backbone_config(name)
        assert cfg.name == name
        if cfg.loader == "open_clip":
            # every shipped hub model is a CLIP trained with OpenAI's normalisation
            assert cfg.mean == tuple(open_clip.OPENAI_DATASET_MEAN), name
            assert cfg.std == tuple(open_clip.OPENAI_DATASET_STD), name
        if cfg.model.startswith("hf-hub:"):
            repo = cfg.model[len("hf-hub:") :]
            assert cfg.hub_repo == repo, name
            assert cfg.url is None or repo in cfg.url or "collections" in cfg.url, name
        elif cfg.loader == "open_clip":  # an open_clip architecture + pretrained tag
            assert (cfg.model, cfg.pretrained) in open_clip.list_pretrained(), name
            arch = open_clip.get_model_config(cfg.model)
            assert arch["vision_cfg"]["image_size"] == cfg.image_size, name
        if cfg.tokenizer is not None:
            assert open_clip.get_model_config(cfg.tokenizer) is not None, name
    bio = get_backbone_config("biomedclip")
    # the hub id spells the resolution it was trained at
    assert bio.model.endswith("_224") and bio.image_size == 224
    lit = get_backbone_config("synthderm-lit")
    with safe_open(str(WEIGHTS_PATH), framework="pt") as fh:
        n_pos = fh.get_slice("visual.positional_embedding").get_shape()[0]
        names = list(fh.keys())
        stem = [k for k in names if k.startswith("visual.conv1.") and k.endswith(".weight")]
    # 1 class token + a square grid; the stem is one stride-2 convolution per weight
    grid = math.isqrt(n_pos - 1)
    assert grid * grid == n_pos - 1
    assert lit.image_size == grid * 2 ** len(stem)


def test_unknown_name_lists_known_ones():
    with pytest.raises(UnknownNameError) as info:
        get_backbone_config("biomedclap")
    msg = str(info.value)
    for name in EXPECTED:
        assert name in msg
    assert isinstance(info.value, KeyError)


def test_config_round_trip_and_validation():
    cfg = get_backbone_config("openai-vit-b-16")
    again = BackboneConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    bad = cfg.to_dict() | {"templates": ["no placeholder"]}
    with pytest.raises(ConfigError, match="templates"):
        BackboneConfig.from_dict(bad, source="x.json")
    with pytest.raises(ConfigError, match="unknown key"):
        BackboneConfig.from_dict(cfg.to_dict() | {"typo": 1}, source="x.json")
    with pytest.raises(ConfigError, match="loader"):
        BackboneConfig.from_dict(cfg.to_dict() | {"loader": "magic"}, source="x.json")
