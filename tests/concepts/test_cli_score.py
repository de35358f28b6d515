import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner
from PIL import Image

from conceptlens.backbones import load_backbone
from conceptlens.cli import main
from conceptlens.concepts import score_concepts
from conceptlens.data import load_manifest
from tests.backbones._tiny import VIT_AVG, images, tiny_bank, write_checkpoint


@pytest.fixture
def setup(tmp_path):
    imgs = images(6, size=(36, 36), seed=2)
    rows = []
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(tmp_path / f"im{i}.png")
        rows.append({"path": f"im{i}.png", "label": ["benign", "malignant"][i % 2], "site": "a"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    tiny_bank().save(tmp_path / "toy.yaml")
    ckpt = write_checkpoint(VIT_AVG, tmp_path / "tiny.safetensors")
    return tmp_path, ckpt


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_score_cli_writes_labelled_scores(setup, suffix):
    tmp_path, ckpt = setup
    out = tmp_path / f"scores{suffix}"
    args = [
        "score",
        "--data",
        str(tmp_path / "manifest.csv"),
        "--bank",
        str(tmp_path / "toy.yaml"),
        "--backbone",
        str(ckpt),
        "--out",
        str(out),
        "--mode",
        "relative",
        "--cache",
        str(tmp_path / "cache"),
    ]
    res = CliRunner().invoke(main, ["--quiet", *args])
    assert res.exit_code == 0, res.output
    assert "6 samples x 3 concepts" in res.output
    got = xr.open_dataset(out, engine=None if suffix == ".nc" else "zarr")
    got = got["concept_score"].load()
    ds = load_manifest(tmp_path / "manifest.csv")
    ref = score_concepts(load_backbone(ckpt), ds, tiny_bank(), mode="relative")
    np.testing.assert_allclose(got.values, ref.values, atol=1e-6)
    assert list(got["sample"].values) == ds.ids
    assert list(got["concept_group"].values) == list(ref["concept_group"].values)
    assert got.attrs["score_mode"] == "relative" and got.attrs["bank_id"] == "toy"
    assert "site" in got.coords


def test_score_cli_rejects_unknown_suffix(setup):
    tmp_path, ckpt = setup
    res = CliRunner().invoke(
        main,
        [
            "score",
            "--data",
            str(tmp_path / "manifest.csv"),
            "--bank",
            str(tmp_path / "toy.yaml"),
            "--backbone",
            str(ckpt),
            "--out",
            str(tmp_path / "x.csv"),
        ],
    )
    assert res.exit_code == 1 and ".nc" in res.output


def _score_args(tmp_path, ckpt, manifest, *extra):
    return [
        "score", "--data", str(manifest), "--bank", str(tmp_path / "toy.yaml"),
        "--backbone", str(ckpt), "--out", str(tmp_path / "scores.nc"),
        "--cache", str(tmp_path / "cache"), *extra,
    ]  # fmt: skip


def test_score_cli_stops_on_a_label_typo(setup):
    tmp_path, ckpt = setup
    frame = pd.read_csv(tmp_path / "manifest.csv")
    frame.loc[0, "label"] = "benigm"  # a typo: seen once, not a bank class
    frame.to_csv(tmp_path / "typo.csv", index=False)
    res = CliRunner().invoke(main, _score_args(tmp_path, ckpt, tmp_path / "typo.csv"))
    assert res.exit_code == 1
    assert "'benigm'" in res.output and "did you mean 'benign'" in res.output
    assert "--accept-label benigm" in res.output
    assert not (tmp_path / "scores.nc").exists()
    res = CliRunner().invoke(
        main,
        [
            "--quiet",
            *_score_args(tmp_path, ckpt, tmp_path / "typo.csv", "--accept-label", "benigm"),
        ],
    )
    assert res.exit_code == 0, res.output
    got = xr.load_dataset(tmp_path / "scores.nc")["concept_score"]
    # the bank's declared classes travel with the scores, for `conceptlens fit`
    assert got.attrs["bank_classes"] == '["benign", "malignant"]'
