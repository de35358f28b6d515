"""`conceptlens mask fit --rule`: the rule chosen by name on the command line."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr
from click.testing import CliRunner

from conceptlens.cli import main
from conceptlens.heads import ConceptBottleneckClassifier, load_head, save_head
from conceptlens.masking import TestTimeMasking

CONCEPTS = ["veil", "streaks", "ruler"]


def _scores(rng, n, offset, prefix):
    y = rng.integers(0, 2, n)
    X = np.column_stack(
        [1.2 * y + rng.normal(size=n), 0.8 * y + rng.normal(size=n), rng.normal(size=n)]
    )
    return xr.DataArray(
        X + np.asarray(offset),
        dims=("sample", "concept"),
        coords={
            "sample": [f"{prefix}{i:04d}" for i in range(n)],
            "concept": CONCEPTS,
            "label": ("sample", np.array(["nevus", "melanoma"])[y]),
        },
        name="concept_score",
    )


def test_mask_fit_rule_recentre(tmp_path, rng):
    src = _scores(rng, 600, [0, 0, 0], "s")
    tgt = _scores(rng, 400, [1.5, -0.6, 0], "t")  # the target device shifts two concepts
    save_head(ConceptBottleneckClassifier(C=0.1).fit(src, "label"), tmp_path / "model")
    src.to_netcdf(tmp_path / "source.nc")
    tgt.to_netcdf(tmp_path / "target.nc")
    model_dir, target, out = tmp_path / "model", tmp_path / "target.nc", tmp_path / "a.json"
    base = ["mask", "fit", "--model", str(model_dir), "--label", "label",
            "--scores", str(target), "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(
        main, [*base, "--rule", "recentre", "--source-scores", str(tmp_path / "source.nc")]
    )
    assert res.exit_code == 0, res.output
    assert "recentre" in res.output and "veil" in res.output
    model = load_head(tmp_path / "model")
    expected = TestTimeMasking(
        model, rule="recentre", source_scores=src, source_labels="label"
    ).fit(tgt, "label")
    saved = json.loads((tmp_path / "a.json").read_text())
    assert [a["concept"] for a in saved["actions"]] == [a.concept for a in expected.actions_]
    np.testing.assert_allclose(saved["shift"], expected.shift_.values)
    # the threshold reaches the rule: above every shift, nothing is re-centred
    res = CliRunner().invoke(main, [*base, "--rule", "recentre", "--recentre-threshold", "50",
                                    "--source-scores", str(tmp_path / "source.nc")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["actions"] == []
    res = CliRunner().invoke(main, [*base, "--shots", "0"])
    assert res.exit_code == 2 and "--shots" in res.output
    # without the training scores: one clear line naming the missing option
    res = CliRunner().invoke(main, [*base, "--rule", "recentre"])
    assert res.exit_code == 1 and "--source-scores" in res.output
    assert "Traceback" not in res.output
