"""`conceptlens fit` and `conceptlens predict` on small netCDF files of concept scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

from conceptlens.cli import main
from conceptlens.data import make_splits
from conceptlens.heads import ConceptBottleneckClassifier, SparseLinearHead, load_head
from conceptlens.heads._cli import _default_split
from tests.heads.test_estimators import _scores


def _write(tmp_path, scores, name="scores.nc"):
    path = tmp_path / name
    scores.to_dataset().to_netcdf(path)
    return path


def _fit(path, out, *extra):
    args = ["fit", "--scores", str(path), "--label", "label", "--out", str(out), "--n-boot", "50"]
    return CliRunner().invoke(main, [*args, *extra])


def _with_split(seed, n=300):
    scores, y = _scores(seed, n=n)
    split = np.array(["train", "val", "test"])[np.arange(n) % 3]
    return scores.assign_coords(split=("sample", split)), y, split


def test_fit_command(tmp_path, global_random_seed):
    scores, _, _ = _with_split(global_random_seed)
    path = _write(tmp_path, scores)
    out = tmp_path / "model"
    result = _fit(
        path, out, "--split-column", "split", "--group-column", "site",
        "--max-concepts-per-class", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output
    assert "top concepts per class (weight per standard deviation" in result.output
    model = load_head(out)
    assert int((model.coef_ != 0).sum("concept").max()) <= 3
    metrics = xr.load_dataset(out / "metrics.nc")
    assert set(metrics.split.values) == {"val", "test"}
    assert "worst" in metrics.group.values


def test_fit_metrics_come_from_a_head_that_never_saw_them(tmp_path, global_random_seed):
    scores, y, split = _with_split(global_random_seed)
    path = _write(tmp_path, scores)
    train, val, test = (split == s for s in ("train", "val", "test"))
    # fixed C: the saved head is the head of the train rows alone
    result = _fit(path, tmp_path / "fixed", "--split-column", "split", "--C", "0.5")
    assert result.exit_code == 0, result.output
    saved = load_head(tmp_path / "fixed")
    ref = SparseLinearHead(C=0.5).fit(scores.values[train], y[train])
    np.testing.assert_allclose(saved.head_.coef_, ref.coef_, atol=1e-10)
    # selected C: fitted on train, C chosen on val, never refitted on val
    result = _fit(path, tmp_path / "path", "--split-column", "split", "--n-cs", "8")
    assert result.exit_code == 0, result.output
    saved = load_head(tmp_path / "path")
    rows = train | val
    ref = ConceptBottleneckClassifier(Cs=8, refit=False).fit(
        scores[rows], y[rows], validation_mask=val[rows]
    )
    assert pytest.approx(ref.C_) == saved.C_
    np.testing.assert_allclose(saved.coef_.values, ref.coef_.values, atol=1e-10)
    # the test metrics are that head's on the test rows
    metrics = xr.load_dataset(tmp_path / "path" / "metrics.nc")
    acc = metrics.estimate.sel(split="test", group="all", metric="accuracy")
    assert float(acc) == pytest.approx(float((ref.predict(scores[test]) == y[test]).mean()))


def test_fit_without_split_column_holds_out_a_stratified_split(tmp_path, global_random_seed):
    scores, y = _scores(global_random_seed, n=300)
    path = _write(tmp_path, scores)
    result = _fit(path, tmp_path / "m", "--C", "0.5", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "stratified 70/15/15 train/val/test split (seed 3)" in result.output
    metrics = xr.load_dataset(tmp_path / "m" / "metrics.nc")
    assert set(metrics.split.values) == {"val", "test"}
    meta = pd.DataFrame({"label": y}, index=[str(s) for s in scores["sample"].values])
    parts = make_splits(meta, stratify_column="label", seed=3)
    train = np.isin(meta.index, parts["train"])
    ref = SparseLinearHead(C=0.5).fit(scores.values[train], y[train])
    np.testing.assert_allclose(load_head(tmp_path / "m").head_.coef_, ref.coef_, atol=1e-10)
    assert int(metrics.n_samples.sel(split="test", group="all")) == len(parts["test"])


def test_default_split_keeps_patients_together(global_random_seed):
    scores, y = _scores(global_random_seed, n=300)
    patient = np.repeat(np.arange(100), 3).astype(str)
    scores = scores.assign_coords(patient_id=("sample", patient))
    split, note = _default_split(scores, y, global_random_seed)
    assert "grouped by patient_id" in note
    assert set(split) == {"train", "val", "test"}
    for p in np.unique(patient):
        assert len(set(split[patient == p])) == 1


def test_fit_stops_on_a_label_typo(tmp_path):
    scores, _, _ = _with_split(0)
    labels = scores["label"].values.astype(object)
    labels[0] = "melanomma"  # row 0 is a train row
    scores = scores.assign_coords(label=("sample", labels))
    path = _write(tmp_path, scores)
    result = _fit(path, tmp_path / "m", "--split-column", "split", "--C", "0.5")
    assert result.exit_code == 1
    assert "'melanomma'" in result.output and "did you mean 'melanoma'" in result.output
    assert "--accept-label melanomma" in result.output
    assert not (tmp_path / "m").exists()
    # an explicit option accepts it as a class of its own
    result = _fit(
        path, tmp_path / "m", "--split-column", "split", "--C", "0.5",
        "--accept-label", "melanomma",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "melanomma" in load_head(tmp_path / "m").classes_


def test_fit_checks_labels_against_the_bank_classes(tmp_path):
    scores, _, _ = _with_split(0)
    scores.attrs["bank_classes"] = json.dumps(["nevus", "melanoma", "seborrheic_keratosis"])
    path = _write(tmp_path, scores)
    result = _fit(path, tmp_path / "m", "--split-column", "split", "--C", "0.5")
    assert result.exit_code == 1
    assert "'seb_k'" in result.output and "seborrheic_keratosis" in result.output
    result = _fit(
        path, tmp_path / "m", "--split-column", "split", "--C", "0.5", "--accept-label", "seb_k"
    )
    assert result.exit_code == 0, result.output


def test_fit_command_bad_column(tmp_path):
    scores, _ = _scores(0, n=60)
    path = _write(tmp_path, scores)
    result = CliRunner().invoke(
        main, ["fit", "--scores", str(path), "--label", "diagnosis", "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert "diagnosis" in result.output and "label" in result.output


@pytest.mark.parametrize("suffix", [".csv", ".nc"])
def test_predict_command_writes_labelled_probabilities(tmp_path, suffix, global_random_seed):
    scores, _, _ = _with_split(global_random_seed)
    path = _write(tmp_path, scores)
    assert _fit(path, tmp_path / "m", "--split-column", "split", "--C", "0.5").exit_code == 0
    model = load_head(tmp_path / "m")
    # new scores: other samples, concepts in another order
    new = scores.isel(sample=slice(0, 40), concept=[5, 4, 3, 2, 1, 0])
    new_path = _write(tmp_path, new, "new.nc")
    out = tmp_path / f"pred{suffix}"
    result = CliRunner().invoke(
        main,
        ["predict", "--model", str(tmp_path / "m"), "--scores", str(new_path), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    expected = model.predict_proba(new.values[:, ::-1])  # back to the fitted concept order
    classes = [str(c) for c in model.classes_]
    if suffix == ".nc":
        ds = xr.load_dataset(out)
        assert ds.proba.dims == ("sample", "class")
        assert list(ds["class"].values) == classes
        np.testing.assert_allclose(ds.proba.values, expected)
        np.testing.assert_array_equal(ds.predicted.values, model.predict(new.values[:, ::-1]))
        np.testing.assert_array_equal(ds["label"].values, new["label"].values)
    else:
        frame = pd.read_csv(out, index_col="sample")
        assert list(frame.index) == list(new["sample"].values)
        np.testing.assert_allclose(frame[[f"proba_{c}" for c in classes]].values, expected)
        np.testing.assert_array_equal(frame["predicted"], model.predict(new.values[:, ::-1]))
        np.testing.assert_array_equal(frame["site"], new["site"].values)


def test_predict_command_rejects_other_suffixes(tmp_path):
    result = CliRunner().invoke(
        main, ["predict", "--model", str(tmp_path), "--scores", "s.nc", "--out", "p.json"]
    )
    assert result.exit_code == 2 and ".csv or .nc" in result.output


def test_a_class_with_only_negative_weights_is_described_by_them():
    """A class recognised by the absence of others' concepts must not print as '(none)'."""
    from conceptlens.heads._cli import _describe_class

    rng = np.random.default_rng(0)
    n = 600
    y = np.repeat(["a", "b", "rest"], n // 3)
    X = rng.normal(size=(n, 3))
    X[y == "a", 0] += 3.0  # concept a marks class a, b marks b, "rest" has neither
    X[y == "b", 1] += 3.0
    s = xr.DataArray(X, dims=("sample", "concept"),
                     coords={"sample": [f"s{i}" for i in range(n)],
                             "concept": ["ca", "cb", "noise"]})  # fmt: skip
    m = ConceptBottleneckClassifier(C=0.05).fit(s, y)
    row = m.coef_std_.sel({"class": "rest"})
    assert float(row.max()) <= 0 < -float(row.min())  # the case under test
    text = _describe_class(m, "rest")
    assert text.startswith("(no positive weight")
    strongest = str(row.concept.values[int(np.argmin(row.values))])
    assert f"{strongest} ({float(row.min()):+.2f})" in text
    pos = m.top_concepts("a")
    assert _describe_class(m, "a").startswith(f"{pos.concept.values[0]} (")


def test_fit_names_bad_split_values_plainly(tmp_path):
    scores, _, split = _with_split(0, n=60)
    scores = scores.assign_coords(split=("sample", np.where(split == "val", "valid", split)))
    res = _fit(_write(tmp_path, scores), tmp_path / "m", "--split-column", "split")
    assert res.exit_code == 1
    assert "has values ['valid']; use train/val/test" in res.output


def test_fit_prints_the_size_of_each_group(tmp_path):
    """A group of one sample has a [0, 0] or [1, 1] interval; the table says how many
    samples stand behind each row."""
    scores, _, split = _with_split(0, n=90)
    site = np.where(np.arange(90) % 2 == 0, "a", "b")
    path = _write(tmp_path, scores.assign_coords(site=("sample", site)))
    res = _fit(path, tmp_path / "m", "--split-column", "split", "--group-column", "site")
    assert res.exit_code == 0, res.output
    assert "split  group            n  metric" in res.output
    n_a = int(((split == "test") & (site == "a")).sum())
    assert f"test   a            {n_a:5d}  accuracy" in res.output


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_silences_every_writers_status_line(tmp_path, monkeypatch, quiet):
    """--quiet / CONCEPTLENS_QUIET silence "wrote ..." and "saved ..." alike (fit, predict,
    data synthderm); the results a command shows (the metrics table) stay."""
    from conceptlens import _progress

    monkeypatch.setattr(_progress, "_QUIET", quiet)
    scores, _, _ = _with_split(0)
    path = _write(tmp_path, scores)
    fit = _fit(path, tmp_path / "m", "--split-column", "split", "--C", "0.5")
    assert fit.exit_code == 0, fit.output
    assert "accuracy" in fit.output
    assert ("\nsaved model to" in fit.output) is (not quiet)
    runs = [
        ["predict", "--model", str(tmp_path / "m"), "--scores", str(path),
         "--out", str(tmp_path / "p.csv")],
        ["data", "synthderm", "--n", "2", "--out", str(tmp_path / "d")],
    ]  # fmt: skip
    for args in runs:
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        assert _wrote(res.output) is (not quiet), (args[0], res.output)
    # -q on the command line does the same as the environment variable
    monkeypatch.setattr(_progress, "_QUIET", False)
    res = CliRunner().invoke(main, ["-q", *runs[0][:-1], str(tmp_path / "p2.csv")])
    assert res.exit_code == 0 and not _wrote(res.output)


def _wrote(output):
    return any(line.startswith("wrote ") for line in output.splitlines())
