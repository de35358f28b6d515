"""Saving and loading atlases and prototype classifiers: round trips and refused files."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from conceptlens.exceptions import ConfigError, DataError, MissingFileError
from conceptlens.spatial import (
    PrototypeClassifier,
    build_atlas,
    load_atlas,
    load_prototype_classifier,
    region_feedback,
    save_atlas,
    save_prototype_classifier,
)


@pytest.fixture(scope="module")
def parts(tiny, toy_bank):
    s = tiny.image_size
    rng = np.random.default_rng(7)
    imgs = rng.integers(0, 256, (30, s, s, 3), dtype=np.uint8)
    P = tiny.patch_embeddings(imgs)[0]
    ids = [f"case{i}" for i in range(30)]
    atlas = build_atlas(tiny, P, toy_bank, n_prototypes=2, top_fraction=0.2, sample_ids=ids)
    y = np.where(rng.random(30) > 0.5, "malignant", "benign")
    labels = rng.random((30, 3)) > 0.5
    clf = PrototypeClassifier(atlas=atlas, C=1.0, class_weight={"benign": 1.0, "malignant": 2.0})
    clf.fit(P, y, concept_labels=labels)
    return tiny, atlas, clf, P


def test_atlas_round_trip_is_exact(parts, tmp_path):
    tiny, atlas, _, P = parts
    out = save_atlas(atlas, tmp_path / "atlas")
    back = load_atlas(out, backbone=tiny)
    for f in ("names", "concepts", "source_ids", "train_ids", "grid", "image_size", "info"):
        assert getattr(back, f) == getattr(atlas, f), f
    for f in ("vectors", "source_sample", "source_y", "source_x", "source_cosine", "wins"):
        np.testing.assert_array_equal(getattr(back, f), getattr(atlas, f))
    np.testing.assert_array_equal(back.activations(P).values, atlas.activations(P).values)


def test_classifier_round_trip_predicts_refines_and_rejects_alike(parts, tmp_path):
    tiny, _, clf, P = parts
    back = load_prototype_classifier(save_prototype_classifier(clf, tmp_path / "c"), backbone=tiny)
    assert back.get_params()["class_weight"] == clf.get_params()["class_weight"]
    np.testing.assert_array_equal(back.predict_proba(P), clf.predict_proba(P))
    np.testing.assert_array_equal(
        back.remove_concepts("ruler").predict_proba(P),
        clf.remove_concepts("ruler").predict_proba(P),
    )
    a = region_feedback(back, P[:3], negative=[(0, 0, 8, 8)], reject=["red_dots"])
    b = region_feedback(clf, P[:3], negative=[(0, 0, 8, 8)], reject=["red_dots"])
    np.testing.assert_array_equal(a.proba.values, b.proba.values)
    # a refined classifier round-trips too, and keeps what it removed removed
    refined = clf.remove_prototypes(["ruler/0"])
    again = load_prototype_classifier(save_prototype_classifier(refined, tmp_path / "r"))
    assert again.prototypes_ == refined.prototypes_
    np.testing.assert_array_equal(again.predict_proba(P), refined.predict_proba(P))
    with pytest.raises(DataError, match="already removed"):
        again.remove_prototypes(["ruler/0"])


def test_saved_files_are_plain_and_tilde_paths_work(parts, tmp_path, monkeypatch):
    _, atlas, clf, _ = parts
    monkeypatch.setenv("HOME", str(tmp_path))
    old = os.umask(0o022)
    try:
        save_atlas(atlas, "~/a")
        save_prototype_classifier(clf, "~/c")
    finally:
        os.umask(old)
    for f in [*(tmp_path / "a").iterdir(), *(tmp_path / "c").rglob("*")]:
        mode = stat.S_IMODE(f.stat().st_mode)
        assert mode == (0o755 if f.is_dir() else 0o644), (f, oct(mode))
    assert load_atlas("~/a").names == atlas.names


def test_other_folders_and_files_are_never_replaced(parts, tmp_path):
    _, atlas, clf, _ = parts
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.csv").write_text("path,label\n")
    with pytest.raises(ConfigError, match=r"holds other files and no atlas\.json"):
        save_atlas(atlas, data)
    with pytest.raises(ConfigError, match="is a file"):
        save_atlas(atlas, data / "manifest.csv")
    # an atlas folder is not a classifier folder, and the other way round
    save_atlas(atlas, tmp_path / "atlas")
    with pytest.raises(ConfigError, match=r"no classifier\.json"):
        save_prototype_classifier(clf, tmp_path / "atlas")
    save_prototype_classifier(clf, tmp_path / "c")
    with pytest.raises(ConfigError, match=r"no atlas\.json"):
        save_atlas(atlas, tmp_path / "c")
    assert (data / "manifest.csv").read_text() == "path,label\n"
    save_atlas(atlas, tmp_path / "atlas")  # an earlier atlas is replaced
    with pytest.raises(ConfigError, match="saves a PrototypeClassifier"):
        save_prototype_classifier(atlas, tmp_path / "x")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        save_prototype_classifier(PrototypeClassifier(atlas=atlas), tmp_path / "x")


def test_another_backbone_is_refused(parts, tmp_path, toy_bank):
    _, atlas, clf, _ = parts
    save_atlas(atlas, tmp_path / "a")
    save_prototype_classifier(clf, tmp_path / "c")

    class Other:
        name = "other-vit"
        fingerprint = "other-vit-0123"
        image_size = atlas.image_size

    for load, where in ((load_atlas, "a"), (load_prototype_classifier, "c")):
        with pytest.raises(ConfigError, match=r"built with backbone .* not with 'other-vit'"):
            load(tmp_path / where, backbone=Other())


def _edit_json(file, **changes):
    meta = json.loads(file.read_text())
    meta.update(changes)
    file.write_text(json.dumps(meta))


def test_tampered_or_missing_files_are_named(parts, tmp_path):
    _, atlas, clf, _ = parts
    a = save_atlas(atlas, tmp_path / "a")
    (a / "atlas.safetensors").write_bytes((a / "atlas.safetensors").read_bytes()[:100])
    with pytest.raises(DataError, match=r"atlas.safetensors: not a readable safetensors"):
        load_atlas(a)
    a = save_atlas(atlas, tmp_path / "b")
    _edit_json(a / "atlas.json", names=atlas.names[:-1])
    with pytest.raises(DataError, match=r"atlas\.json: .* one per prototype"):
        load_atlas(a)
    a = save_atlas(atlas, tmp_path / "c")
    _edit_json(a / "atlas.json", grid=[1, 1])
    with pytest.raises(DataError, match="outside the 30 training images or the 1x1 grid"):
        load_atlas(a)
    a = save_atlas(atlas, tmp_path / "d")
    _edit_json(a / "atlas.json", format=99)
    with pytest.raises(DataError, match="format 99"):
        load_atlas(a)
    (a / "atlas.json").write_text("{not json")
    with pytest.raises(DataError, match=r"atlas\.json"):
        load_atlas(a)
    (a / "atlas.json").unlink()
    with pytest.raises(MissingFileError, match=r"atlas\.json not found"):
        load_atlas(a)
    c = save_prototype_classifier(clf, tmp_path / "e")
    _edit_json(c / "classifier.json", prototypes=list(reversed(clf.prototypes_)))
    with pytest.raises(DataError, match="do not match the head's features"):
        load_prototype_classifier(c)
    c = save_prototype_classifier(clf, tmp_path / "f")
    _edit_json(c / "classifier.json", train_labels=["benign"])
    with pytest.raises(DataError, match="training labels"):
        load_prototype_classifier(c)
