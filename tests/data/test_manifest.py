"""Manifest, folder and image decoding on real scikit-image medical images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conceptlens.data import load_folder, load_manifest, read_image, read_mask
from conceptlens.exceptions import ConfigError, DataError, ImageDecodeError, MissingFileError


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a


def test_folder_loader_reads_skimage_images_back(png_folder, skimage_images):
    ds = load_folder(png_folder)
    assert ds.classes == ["fundus", "pathology"]
    assert ds.ids == ["fundus/microaneurysms.png", "fundus/retina.png", "pathology/ihc.png"]
    assert ds.labels.tolist() == [0, 0, 1]
    expected = {
        "fundus/retina.png": skimage_images["retina"],
        "fundus/microaneurysms.png": skimage_images["microaneurysms"],
        "pathology/ihc.png": skimage_images["immunohistochemistry"],
    }
    for s in ds:
        np.testing.assert_array_equal(s.image, _rgb(expected[s.id]))
    assert ds.validate() is ds
    only = load_folder(png_folder, classes=["pathology"])
    assert only.ids == ["pathology/ihc.png"] and only.classes == ["pathology"]
    with pytest.raises(DataError, match=r"no subfolder for classes \['xray'\]"):
        load_folder(png_folder, classes=["xray"])


def test_folder_loader_stray_and_corrupt_files(png_folder):
    (png_folder / "stray.png").write_bytes((png_folder / "pathology" / "ihc.png").read_bytes())
    with pytest.raises(DataError, match=r"not in a class subfolder"):
        load_folder(png_folder)
    raw = (png_folder / "fundus" / "retina.png").read_bytes()
    (png_folder / "pathology" / "truncated.png").write_bytes(raw[: len(raw) // 2])
    ds = load_folder(png_folder, on_error="skip")
    assert [s.id for s in ds.skipped] == ["stray.png"]
    seen = [s.id for s in ds]
    assert "pathology/truncated.png" not in seen and len(seen) == 3
    assert "pathology/truncated.png" in [s.id for s in ds.skipped]
    reason = next(s.reason for s in ds.skipped if s.id == "pathology/truncated.png")
    assert "truncated.png" in reason and "corrupt or truncated" in reason
    with pytest.raises(MissingFileError):
        load_folder(png_folder / "nope")


def test_read_image_errors(tmp_path, png_folder):
    with pytest.raises(MissingFileError) as info:
        read_image(tmp_path / "missing.png")
    assert isinstance(info.value, FileNotFoundError) and "missing.png" in str(info.value)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageDecodeError, match=r"text.png: not a readable image"):
        read_image(tmp_path / "text.png")
    raw = (png_folder / "fundus" / "retina.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[:2000])
    with pytest.raises(ImageDecodeError, match=r"cut.png: image is corrupt or truncated"):
        read_image(tmp_path / "cut.png")


def test_sixteen_bit_png_is_scaled_from_full_range(tmp_path):
    a = np.array([[0, 257, 65535], [1000, 30000, 40000]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "x16.png")
    out = read_image(tmp_path / "x16.png")
    expected = np.rint(a.astype(float) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out[:, :, 0], expected)


def _write_manifest(root: Path, skimage_images: dict[str, np.ndarray]) -> Path:
    (root / "img").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for k, (name, arr) in enumerate(sorted(skimage_images.items())):
        Image.fromarray(arr).save(root / "img" / f"{name}.png")
        mask = np.zeros(arr.shape[:2], np.uint8)
        mask[: arr.shape[0] // 2] = 255
        Image.fromarray(mask).save(root / "masks" / f"{name}_roi.png")
        rows.append(
            {
                "id": f"case{k:03d}",
                "path": f"img/{name}.png",
                "label": ["benign", "malignant"][k % 2],
                "site": f"site_{k}",
                "age": 40 + k,
                "roi_mask": f"masks/{name}_roi.png" if k != 1 else "",
            }
        )
    frame = pd.DataFrame(rows)
    frame.to_csv(root / "manifest.csv", index=False)
    frame.to_parquet(root / "manifest.parquet", index=False)
    return root / "manifest.csv"


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_manifest_with_masks_and_metadata(tmp_path, skimage_images, kind):
    csv = _write_manifest(tmp_path / "set", skimage_images)
    ds = load_manifest(csv.with_suffix(f".{kind}"))
    names = sorted(skimage_images)
    assert ds.ids == ["case000", "case001", "case002"]  # zero-padded ids survive
    assert ds.classes == ["benign", "malignant"] and ds.labels.tolist() == [0, 1, 0]
    assert list(ds.metadata.columns) == ["label", "site", "age"]
    assert ds.mask_names == ["roi_mask"]
    for k, s in enumerate(ds):
        arr = skimage_images[names[k]]
        np.testing.assert_array_equal(s.image, _rgb(arr))
        if k == 1:
            assert s.masks == {}  # empty cell = no mask for this sample
        else:
            m = s.masks["roi_mask"]
            assert m.dtype == bool and m.shape == arr.shape[:2]
            assert m[: arr.shape[0] // 2].all() and not m[arr.shape[0] // 2 :].any()
    assert ds.metadata.loc["case002", "site"] == "site_2"


def test_manifest_root_and_errors(tmp_path, skimage_images):
    csv = _write_manifest(tmp_path / "set", skimage_images)
    frame = pd.read_csv(csv, dtype=str)
    other = tmp_path / "elsewhere.csv"
    frame.to_csv(other, index=False)
    with pytest.raises(MissingFileError, match=r"image file not found"):
        load_manifest(other)[0]
    assert len(load_manifest(other, root=csv.parent).validate()) == 3
    with pytest.raises(DataError, match=r"path column 'file' not found"):
        load_manifest(csv, path_column="file")
    with pytest.raises(DataError, match=r"label column 'dx' not found"):
        load_manifest(csv, label_column="dx")
    nolab = load_manifest(csv, label_column=None)
    assert nolab[0].label is None and "label" in nolab.metadata.columns


def test_manifest_bad_rows_named_by_line(tmp_path, skimage_images):
    csv = _write_manifest(tmp_path / "set", skimage_images)
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    extra = [
        {"id": "nan_label", "path": "img/retina.png", "label": ""},
        {"id": "ghost", "path": "img/ghost.png", "label": "benign"},
        {"id": "bigmask", "path": "img/retina.png", "label": "benign", "roi_mask": "big.png"},
        {"id": "case000", "path": "img/retina.png", "label": "benign"},
    ]
    Image.fromarray(np.ones((7, 7), np.uint8)).save(tmp_path / "set" / "big.png")
    pd.concat([frame, pd.DataFrame(extra)]).to_csv(csv, index=False)
    with pytest.raises(DataError) as info:
        load_manifest(csv)
    msg = str(info.value)
    assert "manifest.csv line 5" in msg and "'label' is empty (NaN)" in msg
    assert "manifest.csv line 8" in msg and "duplicate id 'case000'" in msg
    ds = load_manifest(csv, on_error="skip")
    assert [s.id for s in ds.skipped] == ["nan_label", "case000"]
    assert len(ds) == 5
    with pytest.raises(MissingFileError, match=r"ghost.png"):
        ds[3]
    with pytest.raises(DataError, match=r"roi_mask is 7x7 .* but its image is 160x160"):
        ds[4]
    good = ds.validate()
    assert good.ids == ["case000", "case001", "case002"]
    reasons = {s.id: s.reason for s in good.skipped}
    assert set(reasons) == {"nan_label", "case000", "ghost", "bigmask"}
    assert "resize the mask" in reasons["bigmask"]


def test_unknown_label_with_given_classes(tmp_path, skimage_images):
    csv = _write_manifest(tmp_path / "set", skimage_images)
    with pytest.raises(DataError, match=r"line 3: unknown label 'malignant'"):
        load_manifest(csv, classes=["benign"])


def test_read_mask_variants(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1, 2, 1] = 9
    Image.fromarray(rgb).save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png", shape=(4, 5))
    assert m.sum() == 1 and m[1, 2]
    np.save(tmp_path / "m.npy", np.eye(3))
    np.testing.assert_array_equal(read_mask(tmp_path / "m.npy"), np.eye(3, dtype=bool))
    with pytest.raises(DataError, match=r"is 3x3"):
        read_mask(tmp_path / "m.npy", shape=(4, 4))


def test_empty_manifest(tmp_path):
    (tmp_path / "e.csv").write_text("path,label\n")
    with pytest.raises(DataError, match=r"no rows"):
        load_manifest(tmp_path / "e.csv")


# --------------------------------------------------------------------------- hostile files
def _small_png(path: Path, shape: tuple[int, int] = (8, 8)) -> Path:
    Image.fromarray(np.full(shape, 120, np.uint8)).save(path)
    return path


def _finishes(fn, seconds: float = 20.0):
    """Run ``fn`` in a daemon thread; fail (instead of hanging) if it blocks."""
    import threading

    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed back to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the loader blocked"
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out.get("value")


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
def test_fifo_row_is_a_bad_sample_not_a_hang(tmp_path):
    import os

    _small_png(tmp_path / "ok.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "m.csv").write_text("path,label\nok.png,a\npipe.png,b\n")
    ds = load_manifest(tmp_path / "m.csv", on_error="skip")
    ds = _finishes(ds.validate)
    assert [s.id for s in ds.skipped] == ["pipe.png"]
    assert "FIFO" in ds.skipped[0].reason
    with pytest.raises(ImageDecodeError, match=r"pipe\.png: is a FIFO"):
        _finishes(lambda: read_image(tmp_path / "pipe.png"))
    with pytest.raises(ImageDecodeError, match="FIFO"):
        _finishes(lambda: read_mask(tmp_path / "pipe.png"))
    os.mkfifo(tmp_path / "manifest.csv")
    with pytest.raises(DataError, match="not a regular file"):
        _finishes(lambda: load_manifest(tmp_path / "manifest.csv"))


def test_extreme_aspect_ratio_is_refused_before_decoding(tmp_path):
    path = _small_png(tmp_path / "strip.png", (1, 20_000))
    assert path.stat().st_size < 1000
    with pytest.raises(ImageDecodeError, match=r"1x20000.*20000:1 above the limit of 10:1"):
        read_image(path)
    assert read_image(path, max_aspect_ratio=None).shape == (1, 20_000, 3)
    assert read_image(_small_png(tmp_path / "wide.png", (10, 80))).shape == (10, 80, 3)
    (tmp_path / "m.csv").write_text("path,label\nstrip.png,a\nwide.png,b\n")
    ds = load_manifest(tmp_path / "m.csv", on_error="skip").validate()
    assert [s.id for s in ds.skipped] == ["strip.png"]
    relaxed = load_manifest(tmp_path / "m.csv", max_aspect_ratio=30_000).validate()
    assert len(relaxed) == 2


def test_decompression_bomb_is_reported_per_sample(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from conceptlens.data._cli import dataset_report

    _small_png(tmp_path / "ok.png", (8, 8))
    _small_png(tmp_path / "bomb.png", (200, 200))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10_000)  # bomb error above 20,000 px
    with pytest.raises(ImageDecodeError, match=r"bomb\.png: refused as a possible decompression"):
        read_image(tmp_path / "bomb.png")
    (tmp_path / "m.csv").write_text("path,label\nok.png,a\nbomb.png,b\n")
    report = dataset_report(load_manifest(tmp_path / "m.csv", on_error="skip"))
    assert len(report["errors"]) == 1 and "bomb.png" in report["errors"][0]
    assert report["n_samples"] == 1


def _forged_npy(path: Path, shape: tuple[int, ...], payload: int = 64) -> Path:
    """A .npy file whose header claims ``shape`` (float64) over ``payload`` bytes of data."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": shape}
        )
        fh.write(b"\0" * payload)
    return path


def test_forged_npy_header_is_a_bad_sample_not_a_memory_error(tmp_path, monkeypatch):
    """The header alone sets what np.load allocates: check it against the file first."""
    from PIL import Image as PILImage

    from conceptlens.data._cli import dataset_report

    # claims 720 GB: np.load raised MemoryError, which no on_error policy catches
    _forged_npy(tmp_path / "huge.npy", (300_000, 300_000))
    with pytest.raises(ImageDecodeError, match=r"huge\.npy.*header says \(300000, 300000\)"):
        read_image(tmp_path / "huge.npy")
    with pytest.raises(ImageDecodeError, match=r"huge\.npy.*truncated or forged"):
        read_mask(tmp_path / "huge.npy")
    # an honest array above the pixel limit is refused like a PNG bomb
    np.save(tmp_path / "big.npy", np.zeros((150, 150), np.uint8))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(ImageDecodeError, match=r"big\.npy: refused as a possible decompression"):
        read_image(tmp_path / "big.npy")
    np.save(tmp_path / "ok.npy", np.zeros((8, 8, 3), np.uint8))
    assert read_image(tmp_path / "ok.npy").shape == (8, 8, 3)
    (tmp_path / "m.csv").write_text("path,label\nok.npy,a\nhuge.npy,b\nbig.npy,c\n")
    report = dataset_report(load_manifest(tmp_path / "m.csv", on_error="skip"))
    assert report["n_samples"] == 1 and len(report["errors"]) == 2


def test_truncated_parquet_is_a_clear_error(tmp_path):
    _small_png(tmp_path / "a.png")
    pd.DataFrame({"path": ["a.png"] * 50, "label": ["x"] * 50}).to_parquet(tmp_path / "m.parquet")
    data = (tmp_path / "m.parquet").read_bytes()
    (tmp_path / "m.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"m\.parquet: not a readable Parquet file.*truncated"):
        load_manifest(tmp_path / "m.parquet")


def test_csv_header_problems_are_named(tmp_path):
    """A repeated column was silently renamed label.1 by pandas; a ;-separated file was one
    column; spaces around header names silently lost the label column."""
    _small_png(tmp_path / "a.png", (8, 8))
    (tmp_path / "dup.csv").write_text("path,label,label\na.png,x,y\n")
    with pytest.raises(
        DataError, match=r"dup\.csv: column\(s\) \['label'\] appear more than once"
    ):
        load_manifest(tmp_path / "dup.csv")
    (tmp_path / "semi.csv").write_text("path;label\na.png;x\n")
    with pytest.raises(DataError, match=r"semi\.csv: .* separated by semicolons.*with commas"):
        load_manifest(tmp_path / "semi.csv")
    (tmp_path / "spaces.csv").write_text("id , path, label \n007,a.png,x\n")
    ds = load_manifest(tmp_path / "spaces.csv")
    assert ds.ids == ["007"] and ds.classes == ["x"]  # id still read as text


def test_a_table_in_memory_or_none_is_named_not_a_type_error():
    frame = pd.DataFrame({"path": ["a.png"], "label": ["nevus"]})
    with pytest.raises(ConfigError, match=r"got DataFrame \(a table in memory: save it"):
        load_manifest(frame)
    with pytest.raises(ConfigError, match=r"path must be the path of a CSV.*got NoneType"):
        load_manifest(None)
