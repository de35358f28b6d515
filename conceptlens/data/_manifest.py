"""CSV/Parquet manifest loader."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from conceptlens._io import user_path
from conceptlens.data._dataset import ImageDataset, OnError
from conceptlens.data._images import MAX_ASPECT_RATIO
from conceptlens.data._sources import FileImages, FileMasks
from conceptlens.exceptions import ConfigError, DataError, MissingFileError

__all__ = ["load_manifest", "read_table"]


def read_table(path: str | os.PathLike[str], *, str_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.tsv``, ``.txt``) or Parquet table.

    Columns in ``str_columns`` are read as text (so ids such as ``"00012"`` keep their
    leading zeros).
    """
    p = user_path(path)
    if not p.exists():
        raise MissingFileError(f"manifest not found: {p}")
    if not p.is_file():
        raise DataError(
            f"{p}: not a regular file (a folder, FIFO or device); give the manifest file"
        )
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(p)
        except (OSError, ValueError, TypeError, RuntimeError) as exc:  # pyarrow.ArrowInvalid...
            raise DataError(
                f"{p}: not a readable Parquet file ({type(exc).__name__}: {str(exc)[:200]}); "
                "it may be truncated or damaged, write it again (or use a CSV manifest)."
            ) from None
        for c in str_columns:
            if c in frame.columns:
                frame[c] = frame[c].astype("string").astype(object)
        return frame
    try:
        if suffix in (".csv", ".tsv", ".txt", ".gz"):
            sep = "\t" if suffix == ".tsv" else ","
            header = _csv_header(p, sep)
            # " label" or "label " in a header row would silently not be the label column
            names = [h.strip() for h in header]
            dtype = {
                raw: str for raw, name in zip(header, names, strict=True) if name in str_columns
            }
            frame = pd.read_csv(p, sep=sep, dtype=dtype)  # type: ignore[arg-type]
            if len(frame.columns) == len(names):
                frame.columns = pd.Index(names)
            return frame
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        OSError,
        csv.Error,
    ) as exc:
        raise DataError(
            f"{p}: cannot parse the manifest ({exc}). It must be a CSV with a header row "
            "or a Parquet file."
        ) from exc
    raise ConfigError(f"{p}: unknown manifest type {suffix!r}; use .csv, .tsv or .parquet.")


def _csv_header(p: Path, sep: str) -> list[str]:
    """The header row as written (pandas renames a repeated ``label`` to ``label.1``)."""
    if p.suffix.lower() == ".gz":
        return [str(c) for c in pd.read_csv(p, sep=sep, nrows=0).columns]
    with open(p, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh, delimiter=sep), [])
    names = [h.strip() for h in header]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"{p}: column(s) {repeated} appear more than once in the header row; only one "
            "would be read. Rename or drop the others."
        )
    if len(header) == 1 and sep == "," and (";" in header[0] or "\t" in header[0]):
        other = "semicolons" if ";" in header[0] else "tabs"
        raise DataError(
            f"{p}: the header row {header[0][:80]!r} is one column separated by {other}; "
            "conceptlens reads comma-separated .csv files (tab-separated ones as .tsv). "
            "Save the manifest with commas."
        )
    return header


def _resolve(cell: Any, root: Path) -> str | None:
    if cell is None or pd.isna(cell):
        return None
    text = str(cell).strip()
    if not text:
        return None
    p = Path(text).expanduser()
    return str(p if p.is_absolute() else root / p)


def dataset_from_frame(
    frame: pd.DataFrame,
    *,
    root: Path,
    path_column: str = "path",
    label_column: str | None = "label",
    label_columns: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    id_column: str | None = None,
    mask_columns: Sequence[str] | None = None,
    on_error: OnError = "raise",
    allow_missing_labels: bool = False,
    dicom_options: Any = None,
    max_aspect_ratio: float | None = MAX_ASPECT_RATIO,
    source_name: str = "manifest",
    row_word: str = "line",
    line_offset: int = 2,
) -> ImageDataset:
    """Build an :class:`ImageDataset` from a manifest table (see :func:`load_manifest`)."""
    if len(frame) == 0:
        raise DataError(f"{source_name} has no rows; the dataset would be empty.")
    if path_column not in frame.columns:
        raise DataError(
            f"{source_name}: path column {path_column!r} not found; columns are "
            f"{list(frame.columns)}. Pass path_column= naming the image-path column."
        )
    frame = frame.reset_index(drop=True)
    if mask_columns is None:
        mask_columns = [c for c in frame.columns if str(c).endswith("_mask")]
    for c in mask_columns:
        if c not in frame.columns:
            raise DataError(f"{source_name}: mask column {c!r} not found.")
    if id_column is None and "id" in frame.columns:
        id_column = "id"
    if label_columns is not None:
        label_column = None
    elif label_column is not None and label_column not in frame.columns:
        if label_column != "label":
            raise DataError(
                f"{source_name}: label column {label_column!r} not found; columns are "
                f"{list(frame.columns)}."
            )
        label_column = None
    names = [f"{source_name} {row_word} {k + line_offset}" for k in range(len(frame))]
    problems: dict[int, str] = {}
    paths: list[str] = []
    for k, cell in enumerate(frame[path_column]):
        resolved = _resolve(cell, root)
        if resolved is None:
            problems[k] = f"empty {path_column!r} cell; give the image path"
            paths.append("")
        else:
            paths.append(resolved)
    if id_column is not None:
        if id_column not in frame.columns:
            raise DataError(f"{source_name}: id column {id_column!r} not found.")
        ids = frame[id_column]
        for k in map(int, ids[ids.isna()].index):
            problems.setdefault(k, f"empty {id_column!r} cell; give every row an id")
        id_list = [str(v) for v in ids]
    else:
        id_list = [
            str(v) if not pd.isna(v) else f"<row {k}>" for k, v in enumerate(frame[path_column])
        ]
    drop = [path_column, *mask_columns]
    if id_column is not None:
        drop.append(id_column)
    meta = frame.drop(columns=drop)
    meta.index = pd.Index(id_list, name="id")
    masks = {
        str(c): FileMasks([_resolve(v, root) for v in frame[c]], str(c)) for c in mask_columns
    }
    return ImageDataset(
        meta,
        FileImages(paths, dicom_options=dicom_options, max_aspect_ratio=max_aspect_ratio),
        label_column=label_column,
        label_columns=label_columns,
        classes=classes,
        masks=masks,
        on_error=on_error,
        allow_missing_labels=allow_missing_labels,
        row_names=names,
        row_problems=problems,
        dicom_options=dicom_options,
    )


def load_manifest(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    path_column: str = "path",
    label_column: str | None = "label",
    label_columns: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    id_column: str | None = None,
    mask_columns: Sequence[str] | None = None,
    on_error: OnError = "raise",
    allow_missing_labels: bool = False,
    dicom_options: Any = None,
    max_aspect_ratio: float | None = MAX_ASPECT_RATIO,
    validate: bool = False,
) -> ImageDataset:
    """Load a CSV or Parquet manifest: one row per image.

    Parameters
    ----------
    path : str or path-like
        ``.csv``/``.tsv`` (header row) or ``.parquet`` manifest.
    root : str or path-like, optional
        Folder that relative image paths start from; default: the manifest's folder.
    path_column : str
        Column holding image paths (PNG, JPEG, TIFF, DICOM, ``.npy``).
    label_column : str or None
        Single-label column (class names or integer indices). The default ``"label"``
        is used only if the manifest has it; ``None`` loads the images unlabelled.
    label_columns : list of str, optional
        Multi-label 0/1 columns instead of ``label_column``.
    classes : list of str, optional
        Class names (order = class index); inferred sorted when omitted.
    id_column : str, optional
        Sample-id column; default ``"id"`` if present, else the path as written.
    mask_columns : list of str, optional
        Mask-path columns; default every column whose name ends in ``_mask``
        (``roi_mask`` is the region of interest). Empty cells mean "no mask".
    on_error : {"raise", "skip"}
        Raise on bad rows/files, or skip them and list each in ``ds.skipped``.
    allow_missing_labels : bool
        Multi-label only: keep empty cells as NaN ("unknown") instead of rejecting them.
    dicom_options : DicomOptions, optional
        Windowing and frame handling for DICOM files.
    max_aspect_ratio : float or None, default 10
        Images whose long side exceeds this multiple of the short side are bad samples
        (their resize would need gigabytes); ``None`` accepts any shape.
    validate : bool
        Decode every image now (:meth:`ImageDataset.validate`) instead of lazily.

    Returns
    -------
    ImageDataset
        Every other column becomes metadata.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.zeros((4, 4), np.uint8)).save(d / "a.png")
    >>> _ = (d / "m.csv").write_text("path,label,site\\na.png,nevus,site_a\\n")
    >>> ds = load_manifest(d / "m.csv")
    >>> ds.classes, ds[0].image.shape, ds.metadata.loc["a.png", "site"]
    (['nevus'], (4, 4, 3), 'site_a')
    """
    if not isinstance(path, str | os.PathLike):
        hint = (
            " (a table in memory: save it with frame.to_csv('manifest.csv', index=False) "
            "next to the images and pass that file)"
            if isinstance(path, pd.DataFrame)
            else ""
        )
        raise ConfigError(
            f"load_manifest: path must be the path of a CSV, TSV or Parquet manifest, got "
            f"{type(path).__name__}{hint}."
        )
    p = user_path(path)
    str_cols = [path_column, id_column or "id", *(mask_columns or [])]
    frame = read_table(p, str_columns=str_cols)
    parquet = p.suffix.lower() in (".parquet", ".pq")
    ds = dataset_from_frame(
        frame,
        root=user_path(root) if root is not None else p.resolve().parent,
        path_column=path_column,
        label_column=label_column,
        label_columns=label_columns,
        classes=classes,
        id_column=id_column,
        mask_columns=mask_columns,
        on_error=on_error,
        allow_missing_labels=allow_missing_labels,
        dicom_options=dicom_options,
        max_aspect_ratio=max_aspect_ratio,
        source_name=p.name,
        row_word="row" if parquet else "line",
        line_offset=0 if parquet else 2,
    )
    return ds.validate() if validate else ds
