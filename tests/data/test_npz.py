"""MedMNIST-layout .npz loader."""

from __future__ import annotations

import numpy as np
import pytest

from conceptlens.data import load_npz
from conceptlens.exceptions import DataError, ImageDecodeError, MissingFileError


def test_single_label_medmnist_layout(tmp_path, rng):
    arrays = {}
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 3, size=(n, 1))
    path = tmp_path / "toymnist.npz"
    np.savez_compressed(path, **arrays)
    ds = load_npz(path, classes=["a", "b", "c"])
    assert len(ds) == 10 and ds.classes == ["a", "b", "c"]
    assert ds.ids[:2] == ["train_00000", "train_00001"] and ds.ids[-1] == "test_00002"
    assert ds.metadata["split"].tolist() == ["train"] * 5 + ["val"] * 2 + ["test"] * 3
    s = ds[6]
    np.testing.assert_array_equal(s.image[:, :, 1], arrays["val_images"][1])
    assert s.label == int(arrays["val_labels"][1, 0])
    parts = ds.split("split")
    assert {k: len(v) for k, v in parts.items()} == {"train": 5, "val": 2, "test": 3}
    only_test = load_npz(path, splits=["test"])
    assert only_test.classes == [str(i) for i in range(int(arrays["test_labels"].max()) + 1)]
    assert len(only_test) == 3


def test_multilabel_rgb_npz(tmp_path, rng):
    images = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, size=(4, 3))
    np.savez(tmp_path / "chest.npz", train_images=images, train_labels=labels)
    ds = load_npz(tmp_path / "chest.npz", label_names=["edema", "mass", "nodule"])
    assert ds.is_multilabel and ds.classes == ["edema", "mass", "nodule"]
    np.testing.assert_array_equal(ds[3].label, labels[3].astype(np.float32))
    np.testing.assert_array_equal(ds.load_image(2), images[2])
    assert [len(b) for b in ds.iter_batches(3)] == [3, 1]


def test_npz_errors(tmp_path):
    with pytest.raises(MissingFileError):
        load_npz(tmp_path / "none.npz")
    np.savez(tmp_path / "odd.npz", x=np.zeros(3))
    with pytest.raises(DataError, match=r"no <split>_images"):
        load_npz(tmp_path / "odd.npz")
    with pytest.raises(DataError, match=r"no array val_images"):
        load_npz(tmp_path / "odd.npz", splits=["val"])
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ImageDecodeError, match=r"not a readable .npz"):
        load_npz(tmp_path / "broken.npz")
    np.savez(tmp_path / "bad.npz", train_images=np.zeros((2, 4, 4), np.uint8), train_labels=[0])
    with pytest.raises(DataError, match=r"1 rows but train_images 2"):
        load_npz(tmp_path / "bad.npz")


def test_nan_float_labels_are_named(tmp_path):
    images = np.zeros((4, 8, 8), np.uint8)
    f = tmp_path / "nan.npz"
    np.savez(f, train_images=images, train_labels=np.array([[0.0], [1.0], [np.nan], [1.0]]))
    with pytest.raises(
        DataError, match=r"train_labels holds NaN or infinite labels in 1 rows \(rows \[2\]\)"
    ):
        load_npz(f)
    g = tmp_path / "frac.npz"
    np.savez(g, train_images=images, train_labels=np.array([0.0, 1.0, 0.5, 1.0]))
    with pytest.raises(DataError, match=r"non-integer labels in rows \[2\]"):
        load_npz(g)
    h = tmp_path / "float.npz"
    np.savez(h, train_images=images, train_labels=np.array([0.0, 1.0, 1.0, 0.0]))
    ds = load_npz(h, classes=["a", "b"])
    assert [ds[i].label for i in range(4)] == [0, 1, 1, 0]
