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


def test_known_configs_have_what_users_need():
    bio = get_backbone_config("biomedclip")
    assert bio.model == "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    assert bio.image_size == 224
    lit = get_backbone_config("synthderm-lit")
    assert lit.loader == "synthderm-lit" and lit.image_size == 96
    assert lit.mean == (0.48145466, 0.4578275, 0.40821073)
    assert get_backbone_config("quiltnet").model == "hf-hub:wisdomik/QuiltNet-B-32"
    assert get_backbone_config("whylesionclip").tokenizer == "ViT-L-14"
    for name in EXPECTED:
        cfg = get_backbone_config(name)
        assert cfg.templates and all("{}" in t for t in cfg.templates)
        assert cfg.preprocessing["image_size"] == cfg.image_size


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
