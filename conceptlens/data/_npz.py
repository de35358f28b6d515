"""MedMNIST-style ``.npz`` loader (``train_images``, ``train_labels``, ``val_*``, ``test_*``)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from conceptlens._io import user_path
from conceptlens.data._dataset import ImageDataset, OnError
from conceptlens.data._sources import NpzImages
from conceptlens.exceptions import DataError, ImageDecodeError, MissingFileError

__all__ = ["load_npz"]

_SPLITS = ("train", "val", "test")


def load_npz(
    path: str | os.PathLike[str],
    *,
    splits: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    on_error: OnError = "raise",
) -> ImageDataset:
    """Load an ``.npz`` archive in the MedMNIST layout that you downloaded yourself.

    The archive holds ``<split>_images`` (``(N, H, W)`` or ``(N, H, W, 3)`` ``uint8``) and
    ``<split>_labels`` (``(N,)`` or ``(N, 1)`` class indices, or ``(N, L)`` 0/1 for
    multi-label sets such as ChestMNIST) for ``split`` in ``train``, ``val``, ``test``.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file (for example ``pathmnist.npz``).
    splits : list of str, optional
        Which splits to load; default every split present.
    classes : list of str, optional
        Class names for single-label sets (MedMNIST's ``INFO[...]["label"]`` values in
        index order); default ``"0"``, ``"1"``, ...
    label_names : list of str, optional
        Column names of a multi-label set; default ``label_0``, ``label_1``, ...
    on_error : {"raise", "skip"}

    Returns
    -------
    ImageDataset
        ids ``"<split>_<index>"``; metadata columns ``split`` and ``index`` (row within
        the split) plus the label column(s). Use ``ds.split("split")`` for the parts.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "toy.npz"
    >>> np.savez(f, train_images=np.zeros((3, 8, 8), np.uint8), train_labels=[[0], [1], [1]])
    >>> ds = load_npz(f, classes=["normal", "tumour"])
    >>> len(ds), ds.ids[0], ds[2].label
    (3, 'train_00000', 1)
    """
    p = user_path(path)
    if not p.exists():
        raise MissingFileError(f"npz file not found: {p}")
    if not p.is_file():
        raise DataError(f"{p}: not a regular file (a folder, FIFO or device); give the .npz file")
    try:
        with np.load(p, allow_pickle=False) as npz:
            members = list(npz.files)
            shapes = {}
            labels: dict[str, np.ndarray] = {}
            wanted = (
                list(splits)
                if splits is not None
                else [s for s in _SPLITS if f"{s}_images" in members]
            )
            for s in wanted:
                if f"{s}_images" not in members:
                    raise DataError(
                        f"{p}: no array {s}_images; the archive has {members}. MedMNIST "
                        "files hold train_/val_/test_ images and labels."
                    )
                shapes[s] = _npy_shape(npz.zip, f"{s}_images.npy", p)
                if f"{s}_labels" in members:
                    labels[s] = np.asarray(npz[f"{s}_labels"])
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ImageDecodeError(
            f"{p}: not a readable .npz archive ({exc}); download it again."
        ) from exc
    if not wanted:
        raise DataError(f"{p}: no <split>_images arrays found; the archive has {members}.")
    frames = []
    keys: list[str] = []
    offsets: list[int] = []
    label_cols: list[str] | None = None
    for s in wanted:
        n = shapes[s][0]
        frame = pd.DataFrame({"split": [s] * n, "index": np.arange(n)})
        frame.index = pd.Index([f"{s}_{i:05d}" for i in range(n)], name="id")
        if s in labels:
            lab = labels[s]
            if lab.shape[0] != n:
                raise DataError(f"{p}: {s}_labels has {lab.shape[0]} rows but {s}_images {n}.")
            lab2 = _check_labels(lab.reshape(n, -1), f"{s}_labels", p)
            if lab2.shape[1] == 1:
                frame["label"] = lab2[:, 0]
            else:
                names = (
                    list(label_names)
                    if label_names is not None
                    else [f"label_{j}" for j in range(lab2.shape[1])]
                )
                if len(names) != lab2.shape[1]:
                    raise DataError(
                        f"{p}: {lab2.shape[1]} label columns but {len(names)} label_names."
                    )
                label_cols = names
                for j, name in enumerate(names):
                    frame[name] = lab2[:, j]
        frames.append(frame)
        keys += [f"{s}_images"] * n
        offsets += list(range(n))
    meta = pd.concat(frames)
    multilabel = label_cols is not None
    has_labels = "label" in meta.columns or label_cols is not None
    if has_labels and meta[label_cols or ["label"]].isna().any().any():
        # a split without labels next to labelled ones
        missing = [s for s in wanted if s not in labels]
        raise DataError(f"{p}: splits {missing} have images but no <split>_labels array.")
    if classes is None and "label" in meta.columns:
        k = int(meta["label"].max()) + 1
        classes = [str(i) for i in range(k)]
    return ImageDataset(
        meta,
        NpzImages(p, keys, offsets),
        label_column="label" if "label" in meta.columns and not multilabel else None,
        label_columns=label_cols if multilabel else None,
        classes=classes if not multilabel else None,
        on_error=on_error,
        row_names=[f"{p.name}:{i}" for i in meta.index],
    )


def _check_labels(lab: np.ndarray, member: str, path: Path) -> np.ndarray:
    """Labels must be numbers; float labels must be finite whole numbers (cast to int)."""
    if lab.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: {member} has dtype {lab.dtype}; expected integer class indices (or 0/1 "
            "columns for a multi-label set)."
        )
    if lab.dtype.kind != "f":
        return lab
    bad_rows = np.flatnonzero(~np.isfinite(lab).all(axis=1))
    if bad_rows.size:
        raise DataError(
            f"{path}: {member} holds NaN or infinite labels in {bad_rows.size} rows "
            f"(rows {bad_rows[:5].tolist()}{' ...' if bad_rows.size > 5 else ''}); fill or drop "
            "those rows before loading (for unknown multi-label entries use a manifest)."
        )
    if not np.array_equal(lab, np.round(lab)):
        rows = np.flatnonzero((lab != np.round(lab)).any(axis=1))
        raise DataError(
            f"{path}: {member} holds non-integer labels in rows {rows[:5].tolist()}; "
            "labels must be class indices (or 0/1 columns)."
        )
    return lab.astype(np.int64)


def _npy_shape(zf: zipfile.ZipFile, member: str, path: Path) -> tuple[int, ...]:
    """Read an npy member's shape from its header without decompressing the data."""
    with zf.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    if len(shape) not in (3, 4):
        raise DataError(f"{path}: {member} has shape {shape}; expected (N, H, W[, 3]).")
    return tuple(int(x) for x in shape)
