"""SynthDerm on disk: write_synthderm, manifest round-trip, resume, CLI, to_dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conceptlens.data import load_manifest
from conceptlens.exceptions import ConfigError
from conceptlens.synthderm import (
    SYNTHDERM_CLASSES,
    SYNTHDERM_CONCEPTS,
    SynthDerm,
    write_synthderm,
)
from conceptlens.synthderm._vocab import SYNTHDERM_ARTIFACTS, SYNTHDERM_STRUCTURES

NAMES = [n for n, _ in SYNTHDERM_CONCEPTS]
N = 20


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("synthderm")
    manifest = write_synthderm(out, N, seed=7, preset="confounded")
    return manifest, SynthDerm("confounded").generate(N, seed=7)


def test_manifest_columns(written):
    manifest, batch = written
    table = pd.read_csv(manifest, keep_default_na=False)
    expected = [
        "id",
        "path",
        "label",
        "site",
        "skin_tone",
        "caption",
        "lesion_mask",
        *[f"{a}_mask" for a in SYNTHDERM_ARTIFACTS],
        *[f"{c}_mask" for c in SYNTHDERM_STRUCTURES],
        *NAMES,
    ]
    assert list(table.columns) == expected
    assert list(table["id"]) == batch.ids
    assert list(table["label"]) == [SYNTHDERM_CLASSES[i] for i in batch.labels]
    for a in (*SYNTHDERM_ARTIFACTS, *SYNTHDERM_STRUCTURES):
        present = batch.concept(a).astype(bool)
        cells = table[f"{a}_mask"].to_numpy()
        assert all(c.endswith(".png") for c in cells[present])
        assert all(c == "" for c in cells[~present])
    assert np.array_equal(table[NAMES].to_numpy(), batch.concepts)
    assert json.loads((manifest.parent / "synthderm.json").read_text())["preset"] == "confounded"


def test_manifest_round_trip_through_load_manifest(written):
    manifest, batch = written
    ds = load_manifest(manifest, classes=list(SYNTHDERM_CLASSES))
    assert len(ds) == N and ds.ids == batch.ids
    assert ds.classes == list(SYNTHDERM_CLASSES)
    meta = ds.metadata
    assert list(meta["site"]) == list(batch.site)
    assert np.array_equal(meta["skin_tone"].to_numpy(), batch.skin_tone)
    assert list(meta["caption"]) == batch.captions
    assert np.array_equal(meta[NAMES].to_numpy(), batch.concepts)
    for i in range(N):
        sample = ds[i]
        assert sample.label == batch.labels[i]
        assert np.array_equal(sample.image, batch.images[i])
        assert np.array_equal(sample.masks["lesion_mask"], batch.lesion_mask[i])
        for a in SYNTHDERM_ARTIFACTS:
            if batch.concept(a)[i]:
                assert np.array_equal(sample.masks[f"{a}_mask"], batch.artifact_masks[a][i])
        for c in SYNTHDERM_STRUCTURES:
            if batch.concept(c)[i]:
                assert np.array_equal(sample.masks[f"{c}_mask"], batch.structure_masks[c][i])


def test_to_dataset_matches_contract():
    batch = SynthDerm("iid").generate(6, seed=1)
    ds = batch.to_dataset()
    assert len(ds) == 6 and ds.ids == batch.ids
    assert ds.classes == list(SYNTHDERM_CLASSES) and ds.label_column == "label"
    assert {"site", "skin_tone", "caption", *NAMES} <= set(ds.metadata.columns)
    s = ds[2]
    assert s.label == batch.labels[2]
    assert np.array_equal(s.image, batch.images[2])
    assert np.array_equal(s.masks["lesion_mask"], batch.lesion_mask[2])
    assert set(s.masks) == {
        "lesion_mask",
        *[f"{a}_mask" for a in (*SYNTHDERM_ARTIFACTS, *SYNTHDERM_STRUCTURES)],
    }
    veil = "blue_white_veil"
    np.testing.assert_array_equal(s.masks[f"{veil}_mask"], batch.structure_masks[veil][2])


def test_resume_after_interruption_gives_identical_output(tmp_path):
    first = write_synthderm(tmp_path / "a", 12, seed=2)
    reference = {p.name: p.read_bytes() for p in (tmp_path / "a").rglob("*.png")}
    manifest_bytes = first.read_bytes()
    # simulate an interrupted run: manifest missing, some images and masks missing,
    # and a stray temporary file left by a killed writer
    first.unlink()
    pngs = sorted((tmp_path / "a" / "images").glob("*.png"))
    for p in pngs[5:]:
        p.unlink()
    next(iter((tmp_path / "a" / "masks").glob("*.png"))).unlink()
    stray = tmp_path / "a" / "images" / ".synthderm-2-0000011.png.abc123.tmp"
    stray.write_bytes(b"partial")
    again = write_synthderm(tmp_path / "a", 12, seed=2)
    assert again.read_bytes() == manifest_bytes
    now = {p.name: p.read_bytes() for p in (tmp_path / "a").rglob("*.png")}
    assert now == reference
    assert not stray.exists()


def test_refuses_to_mix_settings(tmp_path):
    write_synthderm(tmp_path, 3, seed=0)
    with pytest.raises(ConfigError, match="overwrite"):
        write_synthderm(tmp_path, 3, seed=1)
    manifest = write_synthderm(tmp_path, 3, seed=1, overwrite=True)
    assert pd.read_csv(manifest)["id"].str.startswith("synthderm-1-").all()


def test_refuses_to_replace_a_manifest_it_did_not_write(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,label\nmy.png,nevus\n")
    with pytest.raises(ConfigError, match=r"manifest\.csv that SynthDerm did not write"):
        write_synthderm(tmp_path, 3, seed=0)
    assert (tmp_path / "manifest.csv").read_text() == "path,label\nmy.png,nevus\n"
    write_synthderm(tmp_path, 3, seed=0, overwrite=True)


def test_cli_command(tmp_path):
    from conceptlens.synthderm._cli_data import synthderm

    out = tmp_path / "cli"
    args = ["--n", "5", "--seed", "4", "--preset", "skin-tone-shift", "--out", str(out)]
    result = CliRunner().invoke(synthderm, [*args, "--image-size", "64"])
    assert result.exit_code == 0, result.output
    ds = load_manifest(out / "manifest.csv", classes=list(SYNTHDERM_CLASSES))
    assert len(ds) == 5 and ds.load_image(0).shape == (64, 64, 3)
    expected = SynthDerm("skin-tone-shift", image_size=64).generate(5, seed=4)
    assert np.array_equal(ds.load_image(4), expected.images[4])


def test_cli_through_main_and_unknown_preset(tmp_path):
    from conceptlens.cli import main

    runner = CliRunner()
    ok = runner.invoke(main, ["data", "synthderm", "--n", "2", "--out", str(tmp_path / "m")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "m" / "manifest.csv").exists()
    bad = runner.invoke(
        main, ["data", "synthderm", "--n", "2", "--preset", "nope", "--out", str(tmp_path)]
    )
    assert bad.exit_code == 1
    assert "unknown SynthDerm preset" in bad.output and "confounded" in bad.output


@pytest.mark.parametrize("quiet", [True, False])
def test_cli_message_follows_is_quiet(tmp_path, monkeypatch, quiet):
    from conceptlens import _progress
    from conceptlens.cli import main

    # CONCEPTLENS_QUIET / set_quiet must be honoured without --quiet on the command line
    monkeypatch.setattr(_progress, "_QUIET", quiet)
    res = CliRunner().invoke(main, ["data", "synthderm", "--n", "2", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert ("wrote 2 SynthDerm images" in res.output) is (not quiet)
    assert _progress.is_quiet() is quiet
