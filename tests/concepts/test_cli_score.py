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
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    res = CliRunner().invoke(main, ["--quiet", *args])
    assert res.exit_code == 0, res.output
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
    assert res.exit_code == 2 and ".nc" in res.output


def test_score_cli_refuses_non_finite_scores(setup):
    """NaN weights in the image tower: an error naming concepts and samples, no file."""
    from safetensors.torch import load_file, save_file

    tmp_path, ckpt = setup
    state = load_file(str(ckpt))
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as fh:
        meta = fh.metadata()
    state["visual.proj"][:, 0] = float("nan")
    bad = tmp_path / "nan.safetensors"
    save_file(state, str(bad), metadata=meta)
    out = tmp_path / "scores.nc"
    res = CliRunner().invoke(
        main,
        [
            "--quiet",
            "score",
            "--data",
            str(tmp_path / "manifest.csv"),
            "--bank",
            str(tmp_path / "toy.yaml"),
            "--backbone",
            str(bad),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 1, res.output
    assert "non-finite concept scores for 6 of 6 samples" in res.output
    assert "im0" in res.output and "3 concepts" in res.output
    assert not out.exists()


def test_non_finite_scores_name_the_samples_and_concepts():
    from conceptlens.concepts._scoring import _check_finite_scores
    from conceptlens.exceptions import DataError

    values = np.zeros((4, 3), np.float32)
    values[2, 1] = np.nan
    values[3, 1] = np.inf

    class _BB:
        name = "toy"

    with pytest.raises(DataError, match=r"2 of 4 samples \('c', 'd'\) and 1 concepts \('y'\)"):
        _check_finite_scores(values, ["a", "b", "c", "d"], ["x", "y", "z"], _BB())
    _check_finite_scores(values[:2], ["a", "b"], ["x", "y", "z"], _BB())  # finite: no error


@pytest.mark.slow
def test_score_cli_with_user_weights(setup):
    from safetensors.torch import load_file, save_file

    from conceptlens.backbones._synthderm_lit import WEIGHTS_PATH

    tmp_path, ckpt = setup
    state = load_file(str(WEIGHTS_PATH))
    state["visual.proj"] = state["visual.proj"].flip(0)
    mine = tmp_path / "mine.safetensors"
    save_file(state, str(mine))
    base = ["--quiet", "score", "--data", str(tmp_path / "manifest.csv"), "--bank"]
    base.append(str(tmp_path / "toy.yaml"))
    outs = {}
    for tag, extra in (("shipped", []), ("mine", ["--weights", str(mine)])):
        outs[tag] = tmp_path / f"{tag}.nc"
        res = CliRunner().invoke(main, [*base, "--out", str(outs[tag]), *extra])
        assert res.exit_code == 0, res.output
    a, b = (xr.load_dataarray(outs[t]) for t in ("shipped", "mine"))
    assert a.attrs["backbone_fingerprint"] != b.attrs["backbone_fingerprint"]
    assert not np.allclose(a.values, b.values)
    wrong = CliRunner().invoke(
        main,
        [*base, "--backbone", str(ckpt), "--weights", str(mine), "--out", str(tmp_path / "w.nc")],
    )
    assert wrong.exit_code == 1 and "synthderm-lit" in wrong.output


def test_score_cli_reuses_the_default_cache_and_no_cache_opts_out(setup, monkeypatch):
    from conceptlens.backbones._backbone import Backbone

    tmp_path, ckpt = setup
    monkeypatch.setenv("CONCEPTLENS_CACHE_DIR", str(tmp_path / "default-cache"))
    encoded = []
    forward = Backbone._image_forward

    def counting(self, x, *args, **kwargs):
        encoded.append(len(x))
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(Backbone, "_image_forward", counting)
    base = ["--quiet", "score", "--data", str(tmp_path / "manifest.csv"), "--bank",
            str(tmp_path / "toy.yaml"), "--backbone", str(ckpt)]  # fmt: skip
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "a.nc")])
    assert res.exit_code == 0, res.output
    assert sum(encoded) == 6
    assert any((tmp_path / "default-cache").rglob("*"))
    encoded.clear()
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "b.nc")])
    assert res.exit_code == 0, res.output
    assert encoded == []  # a rerun encodes nothing twice
    a = xr.load_dataarray(tmp_path / "a.nc")
    b = xr.load_dataarray(tmp_path / "b.nc")
    np.testing.assert_array_equal(a.values, b.values)
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "c.nc"), "--no-cache"])
    assert res.exit_code == 0, res.output
    assert sum(encoded) == 6
    res = CliRunner().invoke(
        main, [*base, "--out", str(tmp_path / "d.nc"), "--no-cache", "--cache-dir", "x"]
    )
    assert res.exit_code == 2 and "not both" in res.output


def test_score_cli_takes_the_shared_manifest_options(setup):
    tmp_path, ckpt = setup
    frame = pd.read_csv(tmp_path / "manifest.csv").rename(
        columns={"path": "file", "label": "diagnosis"}
    )
    frame.loc[len(frame)] = {"file": "missing.png", "diagnosis": "benign", "site": "a"}
    (tmp_path / "sub").mkdir()
    frame.to_csv(tmp_path / "sub" / "m.csv", index=False)
    args = ["score", "--data", str(tmp_path / "sub" / "m.csv"), "--root", str(tmp_path),
            "--path-column", "file", "--label-column", "diagnosis", "--bank",
            str(tmp_path / "toy.yaml"), "--backbone", str(ckpt), "--no-cache"]  # fmt: skip
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a.nc")])
    assert res.exit_code == 1 and "missing.png" in res.output
    res = CliRunner().invoke(main, [*args, "--on-error", "skip", "--out", str(tmp_path / "a.nc")])
    assert res.exit_code == 0, res.output
    assert "skipped missing.png" in res.output  # shown even when quiet (the tests are)
    got = xr.load_dataarray(tmp_path / "a.nc")
    assert got.sizes == {"sample": 6, "concept": 3}
    assert sorted(set(got["diagnosis"].values)) == ["benign", "malignant"]


def _score_args(tmp_path, ckpt, manifest, *extra):
    return [
        "score", "--data", str(manifest), "--bank", str(tmp_path / "toy.yaml"),
        "--backbone", str(ckpt), "--out", str(tmp_path / "scores.nc"),
        "--cache-dir", str(tmp_path / "cache"), *extra,
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


def test_score_cli_reads_a_folder_holding_manifest_csv(setup):
    """`data synthderm --out DIR` writes DIR/manifest.csv; `score --data DIR` reads it,
    as `data info DIR` does; a folder without one is a one-line error."""
    tmp_path, ckpt = setup
    res = CliRunner().invoke(main, ["--quiet", *_score_args(tmp_path, ckpt, tmp_path)])
    assert res.exit_code == 0, res.output
    got = xr.load_dataset(tmp_path / "scores.nc")["concept_score"]
    assert list(got["sample"].values) == load_manifest(tmp_path / "manifest.csv").ids
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, _score_args(tmp_path, ckpt, tmp_path / "empty"))
    assert res.exit_code == 1
    assert "is a folder without manifest.csv" in res.output and "Traceback" not in res.output
