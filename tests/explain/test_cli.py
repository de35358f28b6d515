"""`conceptlens explain` and `conceptlens mask` end to end on files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from click.testing import CliRunner

from conceptlens.cli import main
from conceptlens.explain import contributions
from conceptlens.heads import ConceptBottleneckClassifier, load_head, save_head
from conceptlens.masking import TestTimeMasking

CONCEPTS = ["veil", "streaks", "ink", "ruler"]


def _scores(rng, n, shortcut):
    y = rng.integers(0, 2, n)
    ink_on = np.where(rng.random(n) < 0.9, y, 1 - y) if shortcut else rng.integers(0, 2, n)
    X = np.column_stack(
        [
            1.2 * y + rng.normal(size=n),
            0.8 * y + rng.normal(size=n),
            1.5 * ink_on + rng.normal(scale=0.3, size=n),
            rng.normal(size=n),
        ]
    )
    return xr.DataArray(
        X,
        dims=("sample", "concept"),
        coords={
            "sample": [f"{'s' if shortcut else 't'}{i:04d}" for i in range(n)],
            "concept": CONCEPTS,
            "concept_group": ("concept", ["colour", "structure", "artifact", "artifact"]),
            "label": ("sample", np.array(["nevus", "melanoma"])[y]),
        },
        name="concept_score",
    )


def _setup(tmp_path, rng):
    src, tgt = _scores(rng, 600, True), _scores(rng, 400, False)
    cbm = ConceptBottleneckClassifier(C=0.1).fit(src, "label")
    save_head(cbm, tmp_path / "model")
    src.to_netcdf(tmp_path / "source.nc")
    tgt.to_netcdf(tmp_path / "target.nc")
    return src, tgt


def test_explain_writes_contributions_and_prints_cases(tmp_path, rng):
    _src, tgt = _setup(tmp_path, rng)
    res = CliRunner().invoke(
        main,
        [
            "explain",
            "--model",
            str(tmp_path / "model"),
            "--scores",
            str(tmp_path / "target.nc"),
            "--out",
            str(tmp_path / "ex"),
            "--cases",
            "3",
            "--top",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    model = load_head(tmp_path / "model")
    expected = contributions(model, tgt)
    back = xr.load_dataarray(tmp_path / "ex" / "contributions.nc")
    np.testing.assert_allclose(back.values, expected.values)
    table = pd.read_csv(tmp_path / "ex" / "contributions.csv")
    assert len(table) == 400 * 2 * 4
    one = table[(table["sample"] == "t0000") & (table["class"] == "melanoma")]
    np.testing.assert_allclose(
        one.contribution.sum() + one.base_value.iloc[0], one.logit.iloc[0], atol=1e-9
    )
    assert res.output.count("t000") == 3 and "<-" in res.output
    assert "t0000: " in res.output and f", true {tgt.label.values[0]})" in res.output


def test_mask_fit_and_apply(tmp_path, rng):
    _src, tgt = _setup(tmp_path, rng)
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "mask",
            "fit",
            "--model",
            str(tmp_path / "model"),
            "--scores",
            str(tmp_path / "target.nc"),
            "--label",
            "label",
            "--shots",
            "8",
            "--out",
            str(tmp_path / "adapter.json"),
            "--source-scores",
            str(tmp_path / "source.nc"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "ink" in res.output and "source accuracy" in res.output
    res = runner.invoke(
        main,
        [
            "mask",
            "apply",
            "--model",
            str(tmp_path / "model"),
            "--adapter",
            str(tmp_path / "adapter.json"),
            "--scores",
            str(tmp_path / "target.nc"),
            "--out",
            str(tmp_path / "pred.csv"),
            "--label",
            "label",
        ],
    )
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(tmp_path / "pred.csv", index_col="sample")
    model = load_head(tmp_path / "model")
    ttm = TestTimeMasking.load(tmp_path / "adapter.json", model)
    np.testing.assert_array_equal(pred["prediction"].values, ttm.predict(tgt))
    np.testing.assert_array_equal(pred["source_prediction"].values, model.predict(tgt))
    y = tgt["label"].values
    assert np.mean(pred["prediction"] == y) > np.mean(pred["source_prediction"] == y)


def test_mask_errors_are_one_line(tmp_path, rng):
    _setup(tmp_path, rng)
    res = CliRunner().invoke(
        main,
        [
            "mask",
            "fit",
            "--model",
            str(tmp_path / "model"),
            "--scores",
            str(tmp_path / "target.nc"),
            "--label",
            "label",
            "--shots",
            "1000",
            "--out",
            str(tmp_path / "a.json"),
        ],
    )
    assert res.exit_code == 1 and "fewer than --shots 1000" in res.output
    res = CliRunner().invoke(
        main,
        [
            "explain",
            "--model",
            str(tmp_path / "model"),
            "--scores",
            str(tmp_path / "nope.nc"),
            "--out",
            str(tmp_path / "ex"),
        ],
    )
    assert res.exit_code == 1 and "no such file" in res.output and "Traceback" not in res.output


def test_commands_refuse_scores_from_another_scoring(tmp_path, rng):
    """explain, mask fit/apply and report case check the head's provenance like predict."""
    src, tgt = _scores(rng, 600, True), _scores(rng, 400, False)
    src.attrs.update(score_mode="relative", bank_fingerprint="b1", backbone_fingerprint="k1")
    save_head(ConceptBottleneckClassifier(C=0.1).fit(src, "label"), tmp_path / "model",
              trained_on=src)  # fmt: skip
    tgt.attrs.update(score_mode="cosine", bank_fingerprint="b1", backbone_fingerprint="k1")
    tgt = tgt.assign_coords(site=("sample", np.where(np.arange(400) < 200, "a", "b")))
    tgt.to_netcdf(tmp_path / "cos.nc")
    base = ["--model", str(tmp_path / "model"), "--scores", str(tmp_path / "cos.nc")]
    commands = {
        "explain": ["explain", *base, "--out", str(tmp_path / "ex")],
        "mask fit": ["mask", "fit", *base, "--label-column", "label", "--out",
                     str(tmp_path / "a.json")],
        "report case": ["report", "case", *base, "--sample", "t0000", "--out",
                        str(tmp_path / "c.pdf")],
        "audit": ["audit", "--scores", str(tmp_path / "cos.nc"), "--model",
                  f"cbm={tmp_path / 'model'}", "--n-boot", "20", "--out",
                  str(tmp_path / "audit.nc")],
    }  # fmt: skip
    for name, args in commands.items():
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1, (name, res.output)
        assert "score_mode" in res.output and "--allow-score-mismatch" in res.output, name
        res = CliRunner().invoke(main, ["--quiet", *args, "--allow-score-mismatch"])
        assert res.exit_code == 0, (name, res.output)
    args = ["report", "audit", "--audit", str(tmp_path / "audit.nc"), "--model",
            f"cbm={tmp_path / 'model'}", "--scores", str(tmp_path / "cos.nc"),
            "--no-shortcuts", "--out", str(tmp_path / "a.pdf")]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "--allow-score-mismatch" in res.output, res.output
    res = CliRunner().invoke(main, [*args, "--allow-score-mismatch"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(
        main,
        ["mask", "apply", *base, "--adapter", str(tmp_path / "a.json"),
         "--out", str(tmp_path / "p.csv")],
    )  # fmt: skip
    assert res.exit_code == 1 and "score_mode" in res.output


def test_explain_prints_sample_ids_with_escapes(tmp_path, rng):
    _src, tgt = _setup(tmp_path, rng)
    evil = ["\x1b]0;owned\x07t0"] + [str(s) for s in tgt.sample.values[1:]]
    tgt.assign_coords(sample=evil).to_netcdf(tmp_path / "evil.nc")
    args = ["explain", "--model", str(tmp_path / "model"), "--scores", str(tmp_path / "evil.nc")]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "ex"), "--cases", "1"])
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and "\\x1b]0;owned\\x07t0: " in res.output
