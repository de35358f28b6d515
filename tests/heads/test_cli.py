"""`conceptlens fit` on a small netCDF file of concept scores."""

from __future__ import annotations

import numpy as np
import xarray as xr
from click.testing import CliRunner

from conceptlens.cli import main
from conceptlens.heads import load_head
from tests.heads.test_estimators import _scores


def test_fit_command(tmp_path, global_random_seed):
    scores, _ = _scores(global_random_seed, n=300)
    split = np.array(["train", "val", "test"])[np.arange(300) % 3]
    scores = scores.assign_coords(split=("sample", split))
    path = tmp_path / "scores.nc"
    scores.to_dataset().to_netcdf(path)
    out = tmp_path / "model"
    result = CliRunner().invoke(
        main,
        [
            "fit",
            "--scores",
            str(path),
            "--label",
            "label",
            "--out",
            str(out),
            "--split-column",
            "split",
            "--group-column",
            "site",
            "--n-boot",
            "50",
            "--max-concepts-per-class",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "top concepts for melanoma" in result.output
    model = load_head(out)
    assert int((model.coef_ != 0).sum("concept").max()) <= 3
    metrics = xr.load_dataset(out / "metrics.nc")
    assert set(metrics.split.values) == {"val", "test"}
    assert "worst" in metrics.group.values


def test_fit_command_bad_column(tmp_path):
    scores, _ = _scores(0, n=60)
    path = tmp_path / "scores.nc"
    scores.to_dataset().to_netcdf(path)
    result = CliRunner().invoke(
        main, ["fit", "--scores", str(path), "--label", "diagnosis", "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert "diagnosis" in result.output and "label" in result.output
