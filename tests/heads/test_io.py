"""Save/load: round trips (safetensors + JSON, no pickle), validation, provenance, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError, MissingFileError
from conceptlens.heads import (
    ConceptBottleneckClassifier,
    LinearProbe,
    SparseLinearHead,
    SparseLinearHeadCV,
    check_head_scores,
    load_head,
    save_head,
)

NAMES = ["veil", "streaks", "globules", "ruler", "ink", "hair"]
CLASSES = np.array(["nevus", "melanoma", "seb_k"])


def _scores(seed: int, n: int = 240, k: int = 3, **attrs: str) -> tuple[xr.DataArray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(NAMES)))
    logits = X[:, :k] * 2.0
    y = CLASSES[:k][logits.argmax(1)]
    da = xr.DataArray(
        X,
        dims=("sample", "concept"),
        coords={"sample": [f"s{i}" for i in range(n)], "concept": NAMES},
        name="concept_score",
        attrs={
            "score_mode": "relative",
            "bank_fingerprint": "bank-a",
            "backbone_fingerprint": "bb-1",
            "bank_id": "toy",
            **attrs,
        },
    )
    return da, y


def _same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, xr.DataArray):
            assert isinstance(y, xr.DataArray) and x.identical(y), key
        elif isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype, key
            np.testing.assert_array_equal(x, y)
        else:
            assert type(x) is type(y) and x == y, (key, x, y)


@pytest.mark.parametrize(
    "model",
    [
        SparseLinearHead(C=0.3),
        SparseLinearHeadCV(Cs=5),
        ConceptBottleneckClassifier(Cs=5),
        LinearProbe(C=0.2, l1_ratio=0.3, class_weight="balanced"),
    ],
)
@pytest.mark.parametrize("k", [2, 3])
def test_round_trip(model, k, tmp_path, global_random_seed):
    scores, y = _scores(global_random_seed, k=k)
    X = scores if isinstance(model, ConceptBottleneckClassifier) else scores.values
    model.fit(X, y)
    out = save_head(model, tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == ["head.json", "head.safetensors"]
    meta = json.loads((out / "head.json").read_text())
    assert meta["kind"] == type(model).__name__
    loaded = load_head(out)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
    _same_params(loaded.get_params(), model.get_params())
    if isinstance(model, ConceptBottleneckClassifier):
        assert loaded.coef_.identical(model.coef_)


@pytest.mark.parametrize(
    "model",
    [
        SparseLinearHead(C=0.5, class_weight={"nevus": 1.0, "melanoma": 3.0, "seb_k": 0.5}),
        SparseLinearHead(
            C=0.5,
            knowledge_prior=np.array(
                [[1, -1, 0, 0, 0, 0], [0, 1, 0, 0, 0, -1], [0, 0, 1, 0, 0, 0]]
            ),
            prior_strength=0.3,
        ),
        SparseLinearHeadCV(Cs=(0.1, 1.0, 10.0), class_weight="balanced", random_state=3),
        ConceptBottleneckClassifier(
            C=0.4,
            class_weight={"nevus": 2.0, "melanoma": 1.0, "seb_k": 1.0},
            knowledge_prior=xr.DataArray(
                np.eye(3, 6),
                dims=("class", "concept"),
                coords={"class": ["melanoma", "nevus", "seb_k"], "concept": NAMES},
            ),
            prior_strength=0.2,
        ),
    ],
    ids=["class_weight_dict", "prior_array", "cv_tuple_balanced", "cbm_prior_dataarray"],
)
def test_every_parameter_round_trips(model, tmp_path):
    scores, y = _scores(1)
    X = scores if isinstance(model, ConceptBottleneckClassifier) else scores.values
    model.fit(X, y)
    loaded = load_head(save_head(model, tmp_path / "m"))
    _same_params(loaded.get_params(), model.get_params())
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_integer_class_weight_keys_keep_their_type(tmp_path):
    X = np.random.default_rng(0).normal(size=(80, 3))
    y = (X[:, 0] > 0).astype(int)
    head = SparseLinearHead(class_weight={0: 1.0, 1: 2.5}).fit(X, y)
    loaded = load_head(save_head(head, tmp_path / "m"))
    assert loaded.class_weight == {0: 1.0, 1: 2.5}
    assert all(type(k) is int for k in loaded.class_weight)


def test_missing_folder(tmp_path):
    with pytest.raises(MissingFileError, match="save_head"):
        load_head(tmp_path / "nope")


# --------------------------------------------------------------------------- validation
@pytest.fixture
def saved(tmp_path):
    scores, y = _scores(2)
    model = ConceptBottleneckClassifier(C=0.5).fit(scores, y)
    return save_head(model, tmp_path / "m", trained_on=scores), scores


def _edit_json(folder: Path, edit) -> None:
    meta = json.loads((folder / "head.json").read_text())
    edit(meta)
    (folder / "head.json").write_text(json.dumps(meta))


def _rewrite_tensors(folder: Path, edit) -> None:
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(folder / "head.safetensors"))
    edit(arrays)
    save_file(arrays, str(folder / "head.safetensors"))


def _set(key, value):
    return lambda meta: meta.__setitem__(key, value)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set("multilabel", "no"), r"head\.json: field 'multilabel' must be true or false"),
        (_set("n_features_in", "6"), r"head\.json: field 'n_features_in'"),
        (lambda m: m.pop("mode"), r"head\.json: field 'mode' is missing"),
        (_set("mode", "softmax"), r"head\.json: field 'mode' is 'softmax'"),
        (_set("format", True), r"head\.json has format True"),
        (_set("kind", "Pickle"), r"head\.json has format 1 and kind 'Pickle'"),
        (lambda m: m["params"].__setitem__("alpha", 1.0), r"unknown parameters \['alpha'\]"),
        (_set("params", [1, 2]), r"head\.json: field 'params' must be"),
        (_set("concept_names", ["a"] * 6), r"head\.json: field 'concept_names'"),
        (_set("classes", []), r"head\.json: field 'classes'"),
        (_set("trained_on", {"score_mode": 1}), r"head\.json: field 'trained_on'"),
        (_set("C_", "big"), r"head\.json: field 'C_'"),
    ],
)
def test_malformed_head_json_is_refused_naming_the_field(saved, edit, match):
    folder, _ = saved
    _edit_json(folder, edit)
    with pytest.raises(DataError, match=match):
        load_head(folder)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"format": 1,', r"head\.json: invalid JSON at line 1"),
        ('{"format": 1, "format": 1}', r"head\.json: duplicate key 'format'"),
        ("[" * 100_000 + "]" * 100_000, r"head\.json"),
        ("[1, 2]", r"head\.json: expected a JSON object"),
    ],
    ids=["truncated", "duplicate", "deep", "array"],
)
def test_unreadable_head_json(saved, text, match):
    folder, _ = saved
    (folder / "head.json").write_text(text)
    with pytest.raises(DataError, match=match):
        load_head(folder)


def test_non_utf8_head_json(saved):
    folder, _ = saved
    (folder / "head.json").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match=r"head\.json: not UTF-8"):
        load_head(folder)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda a: a.pop("mean"), r"missing \['mean'\]"),
        (lambda a: a.__setitem__("extra", np.zeros(2)), r"unexpected \['extra'\]"),
        (lambda a: a.__setitem__("coef", a["coef"][:, :4].copy()), r"'coef' has shape \(3, 4\)"),
        (lambda a: a.__setitem__("intercept", np.zeros(5)), r"'intercept' has shape \(5,\)"),
        (lambda a: a["coef"].__setitem__((0, 0), np.nan), r"'coef' holds NaN or infinite"),
        (lambda a: a["intercept"].__setitem__(1, np.inf), r"'intercept' holds NaN or infinite"),
        (lambda a: a["scale"].__setitem__(0, 0.0), r"'scale' must be positive"),
        (
            lambda a: a.__setitem__("fit_sample_hashes", np.zeros(3)),
            r"'fit_sample_hashes' must be 1-D uint64",
        ),
    ],
    ids=[
        "missing",
        "extra",
        "coef-shape",
        "intercept-shape",
        "nan",
        "inf",
        "zero-scale",
        "sample-hashes",
    ],
)
def test_bad_tensors_are_refused(saved, edit, match):
    folder, _ = saved
    _rewrite_tensors(folder, edit)
    with pytest.raises(DataError, match=r"head\.safetensors.*" + match):
        load_head(folder)


def test_truncated_safetensors(saved):
    folder, _ = saved
    data = (folder / "head.safetensors").read_bytes()
    (folder / "head.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"head\.safetensors: not a readable safetensors file"):
        load_head(folder)


def test_forged_metadata_header_is_refused(saved):
    """A head file whose header is padded with megabytes of metadata is refused before
    safetensors parses it (save_head writes a header of a few hundred bytes)."""
    from safetensors.numpy import load as load_bytes
    from safetensors.numpy import save

    folder, _ = saved
    file = folder / "head.safetensors"
    arrays = load_bytes(file.read_bytes())
    file.write_bytes(save(arrays, metadata={"pad": "x" * 2_000_000}))
    with pytest.raises(DataError, match=r"head\.safetensors: its safetensors header claims"):
        load_head(folder)


# --------------------------------------------------------------------------- provenance
def test_provenance_is_stored_and_mismatches_refused(saved):
    folder, scores = saved
    meta = json.loads((folder / "head.json").read_text())
    assert meta["trained_on"] == {
        "score_mode": "relative",
        "bank_fingerprint": "bank-a",
        "backbone_fingerprint": "bb-1",
        "bank_id": "toy",
        "standardized": "0",  # raw scores from score_concepts (a score_mode, no mark)
    }
    model = load_head(folder, scores=scores)  # same scoring: accepted
    assert model.trained_on_["score_mode"] == "relative"
    cosine = scores.assign_attrs(score_mode="cosine")
    with pytest.raises(ConfigError, match=r"score_mode: head trained on 'relative', scores have"):
        load_head(folder, scores=cosine)
    other_bank = scores.assign_attrs(bank_fingerprint="bank-b")  # renamed concepts of a bank
    with pytest.raises(ConfigError, match=r"bank_fingerprint.*allow_mismatch=True"):
        check_head_scores(model, other_bank)
    with pytest.raises(ConfigError, match="backbone_fingerprint"):
        check_head_scores(model, scores.assign_attrs(backbone_fingerprint="bb-2"))
    check_head_scores(model, cosine, allow_mismatch=True)  # explicit override
    load_head(folder, scores=other_bank, allow_mismatch=True)
    # a re-save keeps the record
    again = save_head(model, folder.parent / "again")
    assert json.loads((again / "head.json").read_text())["trained_on"] == meta["trained_on"]


# --------------------------------------------------------------------------- atomic folder
def test_interrupted_save_leaves_the_old_model_whole(saved):
    folder, _ = saved
    (folder / "metrics.nc").write_text("old metrics")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    X, y = _scores(5)
    new = ConceptBottleneckClassifier(C=2.0).fit(X, y)

    def killed(path):
        raise KeyboardInterrupt  # the process dies after the head files are written

    with pytest.raises(KeyboardInterrupt):
        save_head(new, folder, extra_files={"metrics.nc": killed})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []
    save_head(new, folder, extra_files={"metrics.nc": lambda p: p.write_text("new metrics")})
    assert (folder / "metrics.nc").read_text() == "new metrics"
    assert load_head(folder).C == 2.0


def test_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path):
    X, y = _scores(0)
    model = SparseLinearHead().fit(X.values, y)
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"holds other files and no head\.json"):
        save_head(model, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    save_head(model, tmp_path / "empty")  # an empty folder is fine


_FIT_OPTS = ("--C", "0.5", "--n-boot", "20")


def _fit_cli(scores_path: Path, out: Path):
    from click.testing import CliRunner

    from conceptlens.cli import main

    return CliRunner().invoke(
        main,
        [
            "fit",
            "--scores",
            str(scores_path),
            "--label",
            "label",
            "--out",
            str(out),
            "--C",
            "0.5",
            "--n-boot",
            "20",
        ],
    )


def test_fit_cli_writes_provenance_and_one_atomic_folder(tmp_path, monkeypatch):
    scores, y = _scores(3)
    path = tmp_path / "scores.nc"
    scores.assign_coords(label=("sample", y)).to_dataset().to_netcdf(path)
    out = tmp_path / "model"
    res = _fit_cli(path, out)
    assert res.exit_code == 0, res.output
    assert (
        json.loads((out / "head.json").read_text())["trained_on"]["bank_fingerprint"] == "bank-a"
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"head.json", "head.safetensors", "metrics.nc"}

    scores2, y2 = _scores(4, bank_fingerprint="bank-b")
    path2 = tmp_path / "scores2.nc"
    scores2.assign_coords(label=("sample", y2)).to_dataset().to_netcdf(path2)

    def killed(self, *a, **k):
        raise KeyboardInterrupt  # killed while writing the metrics of the new model

    monkeypatch.setattr(xr.Dataset, "to_netcdf", killed)
    monkeypatch.setattr(xr.DataArray, "to_netcdf", killed)
    _fit_cli(path2, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_residual_probe_is_refused_with_the_reason(tmp_path):
    scores, y = _scores(2)
    probe = LinearProbe(residual=True).fit(scores.values, y, concept_scores=scores.values)
    with pytest.raises(ConfigError, match=r"residual LinearProbe .* saves plain probes only"):
        save_head(probe, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_training_samples_are_recorded_as_hashes_and_recognised(tmp_path):
    import hashlib

    from conceptlens.heads import used_in_fit

    scores, y = _scores(5)
    model = ConceptBottleneckClassifier(C=0.5).fit(scores[:150], y[:150])
    folder = save_head(model, tmp_path / "m", trained_on=scores[:150])
    loaded = load_head(folder)
    seen = used_in_fit(loaded, scores)
    np.testing.assert_array_equal(seen, np.arange(240) < 150)
    # hashes, not ids: the file holds no sample id; the hash is BLAKE2b-64 of the id
    raw = (folder / "head.safetensors").read_bytes()
    assert b"s149" not in raw and b"s120" not in raw
    h = int.from_bytes(hashlib.blake2b(b"s7", digest_size=8).digest(), "little")
    assert h in set(loaded.fit_sample_hashes_.tolist())
    # explicit fit_samples win over trained_on; plain id lists work
    folder2 = save_head(model, tmp_path / "m2", trained_on=scores, fit_samples=["s3", "s9"])
    assert used_in_fit(load_head(folder2), ["s9", "s10", "s3"]).tolist() == [True, False, True]
    # a re-save of a loaded head keeps the record; a head saved without samples has none
    folder3 = save_head(loaded, tmp_path / "m3")
    np.testing.assert_array_equal(used_in_fit(load_head(folder3), scores), seen)
    bare = save_head(SparseLinearHead(C=0.3).fit(scores.values, y), tmp_path / "m4")
    assert used_in_fit(load_head(bare), scores) is None


def test_fit_cli_records_the_rows_it_fitted_and_selected_on(tmp_path):
    """`fit` records train + val rows; predict on the test rows says nothing, on all warns."""
    from click.testing import CliRunner

    from conceptlens.cli import main
    from conceptlens.heads import used_in_fit

    scores, y = _scores(6)
    split = np.array(["train"] * 150 + ["val"] * 40 + ["test"] * 50)
    path = tmp_path / "scores.nc"
    scores.assign_coords(label=("sample", y), split=("sample", split)).to_netcdf(path)
    out = tmp_path / "model"
    res = CliRunner().invoke(
        main, ["fit", "--scores", str(path), "--split-column", "split", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    seen = used_in_fit(load_head(out), scores)
    np.testing.assert_array_equal(seen, split != "test")
    test_only = tmp_path / "test.nc"
    scores.assign_coords(label=("sample", y))[split == "test"].to_netcdf(test_only)
    r = CliRunner().invoke(main, ["predict", "--model", str(out), "--scores", str(test_only),
                                  "--out", str(tmp_path / "p.csv")])  # fmt: skip
    assert r.exit_code == 0 and "in-sample" not in r.output
    r = CliRunner().invoke(main, ["predict", "--model", str(out), "--scores", str(path),
                                  "--out", str(tmp_path / "q.csv")])  # fmt: skip
    assert r.exit_code == 0
    assert "warning: 190 of 240 samples in" in r.output and "in-sample" in r.output


def test_object_dtype_string_classes(tmp_path):
    X, y = _scores(6)
    model = ConceptBottleneckClassifier(C=0.5).fit(X, np.asarray(y, dtype=object))
    assert model.classes_.dtype == object
    loaded = load_head(save_head(model, tmp_path / "m"))
    assert list(loaded.classes_) == list(model.classes_)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_non_finite_head_is_not_saved(tmp_path):
    X, y = _scores(7)
    head = SparseLinearHead().fit(X.values, y)
    head.coef_ = head.coef_.copy()
    head.coef_[0, 0] = np.nan
    with pytest.raises(DataError, match=r"\['coef'\] hold NaN or infinite"):
        save_head(head, tmp_path / "m")
    assert not (tmp_path / "m").exists()
