"""SynthDerm presets as data: YAML round trip, shipped files, user presets, error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import conceptlens as cl
from conceptlens.exceptions import ConfigError, MissingFileError, UnknownNameError
from conceptlens.synthderm import SynthDerm, SynthDermConfig, list_synthderm_presets
from conceptlens.synthderm._presets import get_synthderm_preset, presets_dir


@pytest.mark.parametrize("name", ["iid", "confounded", "skin-tone-shift", "protocol-shift"])
def test_round_trip_through_yaml(name: str, tmp_path: Path) -> None:
    cfg = SynthDermConfig.from_preset(name)
    path = cfg.to_yaml(tmp_path / f"{name}.yaml")
    again = SynthDermConfig.from_yaml(path)
    assert again == cfg and again.to_dict() == cfg.to_dict()
    assert yaml.safe_load(cfg.to_yaml()) == cfg.to_dict()
    # the same bytes from the file as from the object
    a = SynthDerm(cfg).generate(64, seed=5)
    b = SynthDerm(path).generate(64, seed=5)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.concepts, b.concepts)


def test_shipped_presets_are_the_yaml_files() -> None:
    files = sorted(p.stem for p in presets_dir().glob("*.yaml"))
    assert files == list_synthderm_presets()
    assert files == ["confounded", "iid", "protocol-shift", "skin-tone-shift"]
    for name in files:
        assert get_synthderm_preset(name) == SynthDermConfig.from_yaml(
            presets_dir() / f"{name}.yaml"
        )
    confounded = get_synthderm_preset("confounded")
    # the shortcut the docs describe: ink on most melanomas at training sites, reversed at C
    assert confounded.artifact_probs["site_a"]["melanoma"]["purple_ink"] == 0.85
    assert confounded.artifact_probs["site_c"]["melanoma"]["purple_ink"] == 0.10
    assert confounded.heldout_site == "site_c"


def test_a_user_preset_plants_its_own_shortcut(tmp_path: Path) -> None:
    """Hair on seborrheic keratoses at site_b only: written as YAML, no Python."""
    data = SynthDermConfig.from_preset("iid").to_dict()
    data["name"] = "hair-sk-site-b"
    for site in data["sites"]:
        for cls in data["artifact_probs"][site]:
            data["artifact_probs"][site][cls]["hair"] = 0.05
    data["artifact_probs"]["site_b"]["seborrheic_keratosis"]["hair"] = 0.95
    path = tmp_path / "hair.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")

    batch = cl.SynthDerm(str(path)).generate(3000, seed=0)
    assert batch.preset == "hair-sk-site-b"
    hair = batch.concept("hair").astype(bool)
    sk = np.asarray(batch.class_names)[batch.labels] == "seborrheic_keratosis"
    at_b = batch.site == "site_b"
    assert hair[sk & at_b].mean() > 0.88
    assert hair[~(sk & at_b)].mean() < 0.09
    # drawn, not only labelled: the hair mask covers pixels exactly where hair is present
    has_pixels = batch.artifact_masks["hair"].reshape(len(batch), -1).any(1)
    assert np.array_equal(has_pixels, hair)


def test_write_synthderm_takes_a_preset_file(tmp_path: Path) -> None:
    path = (
        SynthDermConfig.from_preset("confounded")
        .replace(name="mine")
        .to_yaml(tmp_path / "mine.yaml")
    )
    manifest = cl.write_synthderm(tmp_path / "out", 8, seed=1, preset=path)
    table = cl.load_manifest(manifest)
    assert len(table) == 8


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    good = SynthDermConfig.from_preset("iid").to_dict()

    bad = {**good, "artifact_probs": {**good["artifact_probs"]}}
    bad["artifact_probs"]["site_a"] = {
        **good["artifact_probs"]["site_a"],
        "melanoma": {**good["artifact_probs"]["site_a"]["melanoma"], "purple_ink": 1.5},
    }
    path = _write(tmp_path, bad)
    with pytest.raises(ConfigError, match=r"bad\.yaml.*artifact_probs\['site_a'\]\['melanoma'\]"):
        SynthDermConfig.from_yaml(path)

    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown field\(s\) \['shortcut'\]"):
        SynthDermConfig.from_yaml(_write(tmp_path, {**good, "shortcut": 1}))
    missing = {k: v for k, v in good.items() if k != "class_priors"}
    with pytest.raises(ConfigError, match=r"bad\.yaml: missing field\(s\) \['class_priors'\]"):
        SynthDermConfig.from_yaml(_write(tmp_path, missing))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*site_weights.*sums to"):
        SynthDermConfig.from_yaml(
            _write(tmp_path, {**good, "site_weights": dict.fromkeys(good["sites"], 0.5)})
        )
    with pytest.raises(ConfigError, match=r"bad\.yaml: a SynthDerm configuration is a mapping"):
        SynthDermConfig.from_yaml(_write(tmp_path, [1, 2]))
    (tmp_path / "broken.yaml").write_text("name: [unclosed", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"broken\.yaml: not a readable SynthDerm .*invalid YAML"
    ):
        SynthDermConfig.from_yaml(tmp_path / "broken.yaml")
    with pytest.raises(MissingFileError, match=r"absent\.yaml does not exist"):
        SynthDerm(str(tmp_path / "absent.yaml"))
    with pytest.raises(UnknownNameError, match="available presets"):
        SynthDerm("confunded")


def test_yaml_is_read_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo hi']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"not a readable SynthDerm configuration .*python"):
        SynthDermConfig.from_yaml(path)


def test_cli_takes_a_preset_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from conceptlens.cli import main

    path = (
        SynthDermConfig.from_preset("iid").replace(name="cli-preset").to_yaml(tmp_path / "p.yaml")
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["data", "synthderm", "--n", "4", "--preset", str(path), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    settings = (out / "synthderm.json").read_text(encoding="utf-8")
    assert '"cli-preset"' in settings
