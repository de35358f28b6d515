"""DICOM decoding on the files that ship inside pydicom (nobody here wrote them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import JPEG2000Lossless

from conceptlens.data import (
    DICOM_METADATA_TAGS,
    DicomOptions,
    dicom_metadata,
    load_dicom,
    load_manifest,
    read_dicom,
)
from conceptlens.data._dicom import window_linear
from conceptlens.exceptions import ConfigError, ImageDecodeError


def _file(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not installed")
    return str(path)


def reference_window(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 linear window written out independently, 8-bit output."""
    x = x.astype(np.float64)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    y[x <= c - 0.5 - (w - 1) / 2] = 0.0
    y[x > c - 0.5 + (w - 1) / 2] = 255.0
    return y


def _pydicom_unit(out: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Map pydicom's windowed output range (stored-value range) to [0, 1]."""
    bits = int(ds.BitsStored)
    if int(ds.PixelRepresentation) == 1:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        lo, hi = 0, 2**bits - 1
    if "RescaleSlope" in ds:
        m, b = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * m + b, hi * m + b
    return (out - lo) / (hi - lo)


def test_ct_and_mr_decode():
    for name, shape in (("CT_small.dcm", (128, 128, 3)), ("MR_small.dcm", (64, 64, 3))):
        img = read_dicom(_file(name))
        assert img.dtype == np.uint8 and img.shape == shape
        assert img.std() > 10  # a real image, not a constant
        np.testing.assert_array_equal(img[:, :, 0], img[:, :, 2])


def test_file_window_matches_formula_and_pydicom():
    ds = pydicom.dcmread(_file("MR_small.dcm"))
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    got = read_dicom(_file("MR_small.dcm"))[:, :, 0].astype(float)
    raw = ds.pixel_array
    ours = reference_window(raw, c, w)
    assert np.abs(got - ours).max() <= 0.5 + 1e-9
    theirs = _pydicom_unit(apply_voi_lut(raw, ds), ds) * 255.0
    assert np.abs(got - theirs).max() <= 1.0
    # the window really clips: some pixels saturate
    assert (got == 255).any()


def test_rescale_then_explicit_window_matches_pydicom(tmp_path):
    src = pydicom.dcmread(_file("CT_small.dcm"))
    src.RescaleSlope = 2
    src.RescaleIntercept = -100
    path = tmp_path / "ct_rescaled.dcm"
    src.save_as(path)
    ds = pydicom.dcmread(path)
    hu = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_allclose(hu, ds.pixel_array * 2.0 - 100.0)
    got = read_dicom(path, DicomOptions(window=(1500, 1000)))[:, :, 0].astype(float)
    assert np.abs(got - reference_window(hu, 1500, 1000)).max() <= 0.5 + 1e-9
    ds.WindowCenter, ds.WindowWidth = 1500, 1000
    theirs = _pydicom_unit(apply_voi_lut(hu, ds), ds) * 255.0
    assert np.abs(got - theirs).max() <= 1.0
    # no window in the file: min-max of the modality values
    mm = read_dicom(path)[:, :, 0].astype(float)
    expected = (hu - hu.min()) / (hu.max() - hu.min()) * 255.0
    assert np.abs(mm - expected).max() <= 0.5 + 1e-9


def test_window_functions():
    x = np.array([-10.0, 0.0, 10.0])
    np.testing.assert_allclose(window_linear(x, 0, 20, "LINEAR_EXACT"), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(window_linear(x, 0, 20, "SIGMOID"), 1 / (1 + np.exp(-4 * x / 20)))
    with pytest.raises(ConfigError, match=r"width"):
        DicomOptions(window=(0, 0))
    with pytest.raises(ConfigError, match=r"frame"):
        DicomOptions(frame="last")


def test_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "mono1.dcm")
    normal = read_dicom(_file("MR_small.dcm"))
    inverted = read_dicom(tmp_path / "mono1.dcm")
    np.testing.assert_array_equal(inverted, 255 - normal)
    kept = read_dicom(tmp_path / "mono1.dcm", DicomOptions(invert_monochrome1=False))
    np.testing.assert_array_equal(kept, normal)


def _with_pixels(tmp_path: Path, arr: np.ndarray, bits: int, name: str) -> Path:
    ds = pydicom.dcmread(_file("MR_small.dcm"))
    for tag in ("WindowCenter", "WindowWidth"):
        if tag in ds:
            delattr(ds, tag)
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = arr.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    path = tmp_path / name
    ds.save_as(path)
    return path


def test_8_and_12_bit(tmp_path, rng):
    a8 = rng.integers(0, 256, size=(6, 7), dtype=np.uint8)
    img = read_dicom(_with_pixels(tmp_path, a8, 8, "eight.dcm"))
    np.testing.assert_array_equal(img[:, :, 0], a8)  # 8-bit data is used as is
    a12 = rng.integers(0, 4096, size=(6, 7)).astype(np.uint16)
    a12[0, 0], a12[0, 1] = 0, 4095
    path12 = _with_pixels(tmp_path, a12, 12, "twelve.dcm")
    img = read_dicom(path12)[:, :, 0].astype(float)
    assert np.abs(img - a12 / 4095.0 * 255.0).max() <= 0.5 + 1e-9
    win = read_dicom(path12, DicomOptions(window=(2048, 1024)))[:, :, 0].astype(float)
    assert np.abs(win - reference_window(a12, 2048, 1024)).max() <= 0.5 + 1e-9


def test_multiframe_policy():
    path = _file("SC_rgb_rle_2frame.dcm")
    with pytest.raises(ImageDecodeError, match=r"2 frames.*frame='first'"):
        read_dicom(path)
    frames = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(read_dicom(path, DicomOptions(frame="first")), frames[0])
    np.testing.assert_array_equal(read_dicom(path, DicomOptions(frame=1)), frames[1])
    with pytest.raises(ImageDecodeError, match=r"out of range"):
        read_dicom(path, DicomOptions(frame=5))


def test_truncated_and_not_dicom(tmp_path):
    with pytest.raises(ImageDecodeError, match=r"MR_truncated.dcm: DICOM pixel data is truncated"):
        read_dicom(_file("MR_truncated.dcm"))
    (tmp_path / "fake.dcm").write_bytes(b"\x00" * 50 + b"hello")
    with pytest.raises(ImageDecodeError, match=r"fake.dcm"):
        read_dicom(tmp_path / "fake.dcm")


def test_jpeg2000_decodes_when_a_plugin_is_available():
    decoder = get_decoder(JPEG2000Lossless)
    if not decoder.is_available:
        pytest.skip("no JPEG 2000 decoder plugin in this environment")
    lossless = read_dicom(_file("MR_small_jp2klossless.dcm"))
    np.testing.assert_array_equal(lossless, read_dicom(_file("MR_small.dcm")))


def test_jpeg2000_without_plugin_names_what_to_install(monkeypatch):
    decoder = get_decoder(JPEG2000Lossless)
    unavailable = dict(decoder._unavailable)
    unavailable["pillow"] = ("pillow", "openjpeg")
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", unavailable)
    with pytest.raises(ImageDecodeError) as info:
        read_dicom(_file("MR_small_jp2klossless.dcm"))
    msg = str(info.value)
    assert "JPEG 2000" in msg and "pylibjpeg-openjpeg" in msg and "python-gdcm" in msg
    assert "MR_small_jp2klossless.dcm" in msg


def test_no_phi_in_metadata(tmp_path):
    src = pydicom.dcmread(_file("CT_small.dcm"))
    src.PatientName = "Doe^Jane"
    src.PatientID = "MRN-123456"
    src.PatientBirthDate = "19700101"
    src.InstitutionName = "St Example Hospital"
    folder = tmp_path / "dicoms"
    folder.mkdir()
    src.save_as(folder / "a.dcm")
    shutil.copy(_file("MR_small.dcm"), folder / "b.dcm")
    meta = dicom_metadata(folder / "a.dcm")
    assert set(meta) <= set(DICOM_METADATA_TAGS)
    assert meta["Modality"] == "CT" and meta["RescaleIntercept"] == -1024.0
    ds = load_dicom(folder)
    assert ds.ids == ["a.dcm", "b.dcm"] and ds.label_column is None
    text = ds.metadata.to_csv() + repr([s.metadata for s in ds])
    for phi in ("Doe", "MRN-123456", "19700101", "St Example"):
        assert phi not in text
    assert set(ds.metadata.columns) <= set(DICOM_METADATA_TAGS)
    assert ds[0].image.shape == (128, 128, 3)


def test_dicom_paths_in_a_manifest(tmp_path):
    frame = pd.DataFrame(
        {
            "path": [_file("CT_small.dcm"), _file("MR_small.dcm"), _file("MR_truncated.dcm")],
            "label": ["ct", "mr", "mr"],
        }
    )
    frame.to_csv(tmp_path / "m.csv", index=False)
    ds = load_manifest(tmp_path / "m.csv", on_error="skip")
    batches = list(ds.iter_batches(2))
    assert [s.label for b in batches for s in b] == [0, 1]
    assert [s.id for s in ds.skipped] == [_file("MR_truncated.dcm")]


def test_voi_lut_sequence_is_applied(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    src = pydicom.dcmread(_file("MR_small.dcm"))
    n = 4096
    lut = np.rint(np.sqrt(np.arange(n) / (n - 1)) * 4095).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [n, 0, 12]
    item.LUTData = lut.astype("<u2").tobytes()
    src.VOILUTSequence = Sequence([item])
    src.save_as(tmp_path / "voi.dcm")
    ds = pydicom.dcmread(tmp_path / "voi.dcm")
    got = read_dicom(tmp_path / "voi.dcm")[:, :, 0].astype(float)
    expected = lut[np.clip(ds.pixel_array, 0, n - 1)] / 4095.0 * 255.0
    assert np.abs(got - expected).max() <= 0.5 + 1e-9
    theirs = apply_voi_lut(ds.pixel_array, ds, prefer_lut=True) / 4095.0 * 255.0
    assert np.abs(got - theirs).max() <= 0.5 + 1e-9
