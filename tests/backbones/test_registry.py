import json
import os

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


# ----------------------------------------------------------------- user configs
@pytest.fixture
def clean_registry(monkeypatch):
    from conceptlens.backbones import _registry

    monkeypatch.setattr(_registry, "_ADDED", {})
    monkeypatch.delenv(_registry.CONFIGS_ENV, raising=False)
    return _registry


def _user_config(folder, name="my-clip", **extra):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    data = {"name": name, "loader": "open_clip", "model": "local-dir:weights", **extra}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_add_backbone_config_registers_a_validated_file(clean_registry, tmp_path):
    from conceptlens.backbones import add_backbone_config

    path = _user_config(tmp_path / "cfg", image_size=448, templates=["a scan of {}"])
    assert "my-clip" not in list_backbones()
    assert add_backbone_config(path) == ["my-clip"]
    assert "my-clip" in list_backbones()
    cfg = get_backbone_config("my-clip")
    assert cfg.image_size == 448 and cfg.templates == ("a scan of {}",)
    # a relative local-dir: folder is read relative to the config file
    assert cfg.model == f"local-dir:{(tmp_path / 'cfg' / 'weights').resolve()}"
    with pytest.raises(ConfigError, match=r"already registered.*overwrite=True"):
        add_backbone_config(path)
    assert add_backbone_config(path, overwrite=True) == ["my-clip"]


def test_user_configs_are_validated_like_shipped_ones(clean_registry, tmp_path):
    from conceptlens.backbones import add_backbone_config

    bad = _user_config(tmp_path, interpolation="lanczos")
    with pytest.raises(ConfigError, match=r"my-clip\.json: interpolation 'lanczos'"):
        add_backbone_config(bad)
    wrong_name = _user_config(tmp_path, name="other")
    wrong_name.rename(tmp_path / "renamed.json")
    with pytest.raises(ConfigError, match=r"renamed\.json: 'name' 'other' must match"):
        add_backbone_config(tmp_path / "renamed.json")
    with pytest.raises(ConfigError, match="already registered"):
        add_backbone_config(_user_config(tmp_path / "x", name="biomedclip"))
    with pytest.raises(ConfigError, match="does not exist"):
        add_backbone_config(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"broken\.json: not a readable backbone config \(invalid JSON"
    ):
        add_backbone_config(tmp_path / "broken.json")
    assert not clean_registry._ADDED  # nothing half-registered


def test_configs_folder_from_the_environment(clean_registry, tmp_path, monkeypatch):
    _user_config(tmp_path / "a", name="site-clip")
    _user_config(tmp_path / "b", name="lab-clip")
    monkeypatch.setenv(clean_registry.CONFIGS_ENV, f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert {"site-clip", "lab-clip"} <= set(list_backbones())
    assert get_backbone_config("lab-clip").loader == "open_clip"
    with pytest.raises(UnknownNameError, match=r"lab-clip.*site-clip"):
        get_backbone_config("nope")
    monkeypatch.setenv(clean_registry.CONFIGS_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"CONCEPTLENS_BACKBONE_CONFIGS entry.*missing"):
        list_backbones()


def test_unknown_name_says_how_to_add_one(clean_registry):
    with pytest.raises(UnknownNameError, match="add_backbone_config"):
        get_backbone_config("my-own-clip")


def test_a_user_config_loads_like_a_shipped_one(clean_registry, tmp_path):
    import torch
    from safetensors.torch import save_file

    from conceptlens.backbones import add_backbone_config, load_backbone
    from tests.backbones._tiny import VIT_AVG, build

    ref = build(VIT_AVG, seed=3)
    weights = tmp_path / "cfg" / "weights"
    weights.mkdir(parents=True)
    save_file(ref.state_dict(), str(weights / "open_clip_model.safetensors"))
    (weights / "open_clip_config.json").write_text(json.dumps({"model_cfg": VIT_AVG}))
    add_backbone_config(_user_config(tmp_path / "cfg", templates=["a scan of {}"]))
    bb = load_backbone("my-clip")
    assert torch.equal(bb.model.visual.proj, ref.visual.proj)
    assert bb.config.templates == ("a scan of {}",)


def test_user_config_templates_must_be_fillable(clean_registry, tmp_path):
    from conceptlens.backbones import add_backbone_config

    with pytest.raises(ConfigError, match="no other braces"):
        add_backbone_config(_user_config(tmp_path, templates=["a scan of {} in {site}"]))
    assert not clean_registry._ADDED
