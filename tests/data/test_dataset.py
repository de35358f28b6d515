"""ImageDataset: contract C1, labels, masks, errors and skip mode, torch adapter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conceptlens.data import ImageDataset, Sample
from conceptlens.exceptions import ConceptLensError, ConfigError, DataError


@pytest.fixture
def arrays(rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    images = rng.integers(0, 256, size=(7, 12, 10, 3), dtype=np.uint8)
    meta = pd.DataFrame(
        {
            "label": [0, 1, 2, 1, 0, 2, 1],
            "site": ["a", "a", "b", "b", "c", "c", "c"],
            "age": [30.0, 41.0, 52.0, 63.0, 74.0, 85.0, 96.0],
        }
    )
    masks = rng.random((7, 12, 10)) > 0.5
    return images, meta, masks


def test_from_arrays_contract(arrays):
    images, meta, masks = arrays
    ds = ImageDataset.from_arrays(
        images, meta, classes=["nevus", "melanoma", "sk"], masks={"roi_mask": masks}
    )
    assert len(ds) == 7
    assert ds.ids == [str(i) for i in range(7)]
    assert ds.classes == ["nevus", "melanoma", "sk"]
    assert ds.label_column == "label" and ds.label_columns == ["label"]
    assert list(ds.metadata.columns) == ["label", "site", "age"]
    assert ds.metadata.index.tolist() == ds.ids
    s = ds[3]
    assert isinstance(s, Sample)
    assert s.id == "3" and s.label == 1 and isinstance(s.label, int)
    assert s.image.dtype == np.uint8 and s.image.shape == (12, 10, 3)
    np.testing.assert_array_equal(s.image, images[3])
    assert s.metadata == {"label": 1, "site": "b", "age": 63.0}
    assert s.masks["roi_mask"].dtype == bool
    np.testing.assert_array_equal(s.masks["roi_mask"], masks[3])
    np.testing.assert_array_equal(ds.load_image(-1), images[6])
    np.testing.assert_array_equal(ds.labels, meta["label"].to_numpy())
    assert "n=7" in repr(ds) and "uint8(12, 10, 3)" in repr(s)


def test_from_arrays_ids_and_greyscale(rng):
    grey = rng.integers(0, 256, size=(3, 5, 4), dtype=np.uint8)
    ds = ImageDataset.from_arrays(grey, pd.DataFrame({"label": ["b", "a", "b"]}), ids=list("xyz"))
    assert ds.ids == ["x", "y", "z"]
    assert ds.classes == ["a", "b"]  # inferred, sorted
    assert [s.label for s in ds] == [1, 0, 1]
    img = ds.load_image(0)
    assert img.shape == (5, 4, 3)
    np.testing.assert_array_equal(img[:, :, 2], grey[0])
    unlabelled = ImageDataset.from_arrays(grey)
    assert unlabelled[0].label is None and unlabelled.label_column is None


def test_numeric_labels_without_classes_sort_numerically(rng):
    ds = ImageDataset.from_arrays(
        np.zeros((4, 2, 2, 3), np.uint8), pd.DataFrame({"label": [10, 2, 2, 1]})
    )
    assert ds.classes == ["1", "2", "10"]
    assert ds.labels.tolist() == [2, 1, 1, 0]


def test_iter_batches_subset_and_split(arrays):
    images, meta, _ = arrays
    ds = ImageDataset.from_arrays(images, meta)
    batches = list(ds.iter_batches(3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [s.id for b in batches for s in b] == ds.ids
    sub = ds.subset([5, 1])
    assert sub.ids == ["5", "1"] and sub[0].label == 2
    np.testing.assert_array_equal(sub.load_image(1), images[1])
    assert ds.subset(np.array([True, False] * 3 + [True])).ids == ["0", "2", "4", "6"]
    parts = ds.split("site")
    assert {k: v.ids for k, v in parts.items()} == {
        "a": ["0", "1"],
        "b": ["2", "3"],
        "c": ["4", "5", "6"],
    }
    assert ds.split({"x": ["6", "0"]})["x"].ids == ["6", "0"]
    with pytest.raises(DataError, match=r"not in the dataset"):
        ds.select_ids(["nope"])
    with pytest.raises(ConfigError):
        list(ds.iter_batches(0))


def test_multilabel_with_unknowns():
    meta = pd.DataFrame({"edema": [1, 0, np.nan], "effusion": [0.0, 1.0, 1.0]})
    images = np.zeros((3, 4, 4, 3), np.uint8)
    with pytest.raises(DataError, match=r"'edema' is empty"):
        ImageDataset(meta, _arr(images), label_columns=["edema", "effusion"])
    ds = ImageDataset(
        meta, _arr(images), label_columns=["edema", "effusion"], allow_missing_labels=True
    )
    assert ds.is_multilabel and ds.classes == ["edema", "effusion"]
    lab = ds[2].label
    assert lab.dtype == np.float32 and np.isnan(lab[0]) and lab[1] == 1.0
    bad = pd.DataFrame({"edema": [1, 2, 0]})
    with pytest.raises(DataError, match=r"holds 2"):
        ImageDataset(bad, _arr(images), label_columns=["edema"])


def _arr(images):
    from conceptlens.data._sources import ArrayImages

    return ArrayImages(images)


@pytest.mark.parametrize(
    ("labels", "classes", "match"),
    [
        (["a", "b", None], None, "line|row 2.*empty \\(NaN\\)"),
        (["a", "b", "zebra"], ["a", "b"], "unknown label 'zebra'.*known classes"),
        ([0, 1, 5], ["a", "b"], "label 5 .*not a valid index"),
        ([0.0, 1.0, 1.5], None, "not a class index"),
    ],
)
def test_bad_labels_raise_and_name_the_row(labels, classes, match):
    images = np.zeros((3, 4, 4, 3), np.uint8)
    meta = pd.DataFrame({"label": labels})
    with pytest.raises(DataError, match=match) as info:
        ImageDataset.from_arrays(images, meta, classes=classes)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConceptLensError)
    assert "on_error='skip'" in str(info.value)
    ds = ImageDataset.from_arrays(images, meta, classes=classes, on_error="skip")
    assert len(ds) == 2
    assert len(ds.skipped) == 1 and ds.skipped[0].stage == "labels"
    assert ds.skipped[0].id == "2"


def test_empty_duplicate_and_shape_errors(rng):
    with pytest.raises(DataError, match=r"empty"):
        ImageDataset.from_arrays(np.zeros((0, 4, 4, 3), np.uint8), pd.DataFrame({"label": []}))
    images = np.zeros((3, 4, 4, 3), np.uint8)
    with pytest.raises(DataError, match=r"duplicate id 'a'"):
        ImageDataset.from_arrays(images, ids=["a", "b", "a"])
    ds = ImageDataset.from_arrays(images, ids=["a", "b", "a"], on_error="skip")
    assert ds.ids == ["a", "b"] and "duplicate" in ds.skipped[0].reason
    with pytest.raises(DataError, match=r"mask 'roi_mask' is 5x4 but images are 4x4"):
        ImageDataset.from_arrays(images, masks={"roi_mask": np.zeros((3, 5, 4), bool)})
    with pytest.raises(DataError, match=r"3 images but 2 metadata rows"):
        ImageDataset.from_arrays(images, pd.DataFrame({"label": [0, 1]}))
    with pytest.raises(ConfigError, match=r"on_error"):
        ImageDataset.from_arrays(images, on_error="ignore")
    with pytest.raises(DataError, match=r"label column 'dx' not in metadata"):
        ImageDataset.from_arrays(images, pd.DataFrame({"y": [0, 1, 2]}), label_column="dx")


def test_float_images_and_bad_images_in_skip_mode():
    good = np.linspace(0, 1, 3 * 4 * 4 * 3).reshape(3, 4, 4, 3)
    ds = ImageDataset.from_arrays(good)
    np.testing.assert_array_equal(ds.load_image(0), np.rint(good[0] * 255).astype(np.uint8))
    bad = good.copy()
    bad[1] *= 7.0  # out of [0, 1]
    ds = ImageDataset.from_arrays(bad, on_error="skip")
    assert [s.id for s in ds] == ["0", "2"]
    assert ds.skipped[0].id == "1" and "[0, 1]" in ds.skipped[0].reason
    raising = ImageDataset.from_arrays(bad)
    with pytest.raises(DataError, match=r"1 unreadable sample"):
        raising.validate()
    kept = ImageDataset.from_arrays(bad, on_error="skip").validate()
    assert kept.ids == ["0", "2"] and [s.id for s in kept.skipped] == ["1"]


def test_torch_dataset_and_dataloader(arrays):
    import torch

    images, meta, _ = arrays
    ds = ImageDataset.from_arrays(images, meta)
    tds = ds.to_torch()
    assert isinstance(tds, torch.utils.data.Dataset) and len(tds) == 7
    item = tds[2]
    assert item["image"].shape == (3, 12, 10) and item["image"].dtype == torch.uint8
    batches = list(ds.dataloader(batch_size=4))
    assert [b["image"].shape[0] for b in batches] == [4, 3]
    np.testing.assert_array_equal(batches[1]["image"][0].numpy().transpose(1, 2, 0), images[4])
    assert batches[0]["label"].tolist() == [0, 1, 2, 1]
    assert batches[1]["id"] == ["4", "5", "6"]
    scaled = next(iter(ds.dataloader(7, transform=lambda im: torch.tensor(im.mean()))))
    np.testing.assert_allclose(scaled["image"].numpy(), images.mean(axis=(1, 2, 3)), rtol=1e-6)


def test_dataloader_workers_report_skipped():
    import torch

    bad = np.zeros((5, 4, 4, 3), np.float64)
    bad[3] = 2.0
    ds = ImageDataset.from_arrays(bad, on_error="skip")
    batches = list(ds.dataloader(batch_size=5, num_workers=2))
    assert len(batches) == 1 and batches[0]["index"].tolist() == [0, 1, 2, 4]
    assert [s.id for s in batches[0]["skipped"]] == ["3"]
    assert [s.id for s in ds.skipped] == ["3"]
    mixed = ImageDataset.from_arrays(np.zeros((2, 4, 4, 3), np.uint8))
    mixed._source.images = [np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)]
    with pytest.raises(DataError, match=r"different sizes"):
        list(mixed.dataloader(2))
    assert torch.is_tensor(batches[0]["label"])
