"""Folder-per-class loader."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from conceptlens._io import user_path
from conceptlens.data._dataset import ImageDataset, OnError
from conceptlens.data._images import IMAGE_EXTENSIONS, MAX_ASPECT_RATIO, is_dicom_path
from conceptlens.data._sources import FileImages
from conceptlens.exceptions import DataError, MissingFileError

__all__ = ["list_image_files", "load_folder"]


def _is_image(p: Path, extensions: Sequence[str]) -> bool:
    if p.name.startswith("."):
        return False
    if p.suffix.lower() in extensions:
        return True
    return p.suffix == "" and ".dcm" in extensions and is_dicom_path(p)


def list_image_files(
    folder: str | os.PathLike[str], *, extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> list[Path]:
    """Every image file under ``folder`` (recursively, hidden files skipped), sorted."""
    root = user_path(folder)
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and _is_image(p, extensions)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def load_folder(
    root: str | os.PathLike[str],
    *,
    classes: Sequence[str] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    on_error: OnError = "raise",
    dicom_options: Any = None,
    validate: bool = False,
    max_aspect_ratio: float | None = MAX_ASPECT_RATIO,
) -> ImageDataset:
    """Load ``root/<class>/<image>`` (one subfolder per class, searched recursively).

    Parameters
    ----------
    root : str or path-like
        Folder whose subfolders are the classes.
    classes : list of str, optional
        Class names in index order; default the sorted subfolder names. Every listed
        class must have a subfolder.
    extensions : sequence of str
        File extensions to pick up (lower case, with the dot).
    on_error : {"raise", "skip"}
        Raise on bad files, or skip them and list each in ``ds.skipped``. Images directly
        in ``root`` (outside any class folder) are bad rows.
    dicom_options : DicomOptions, optional
    validate : bool
        Decode every image now instead of lazily.
    max_aspect_ratio : float or None, default 10
        Images whose long side exceeds this multiple of the short side are bad samples;
        ``None`` accepts any shape.

    Returns
    -------
    ImageDataset
        ids are the paths relative to ``root`` (POSIX); label column ``label``.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for c in ("benign", "malignant"):
    ...     (d / c).mkdir()
    ...     Image.fromarray(np.zeros((4, 4), np.uint8)).save(d / c / "x.png")
    >>> ds = load_folder(d)
    >>> ds.ids, ds.classes, ds[1].label
    (['benign/x.png', 'malignant/x.png'], ['benign', 'malignant'], 1)
    """
    base = user_path(root)
    if not base.is_dir():
        raise MissingFileError(f"image folder not found: {base}")
    subdirs = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        class_list = subdirs
    else:
        class_list = [str(c) for c in classes]
        missing = [c for c in class_list if c not in subdirs]
        if missing:
            raise DataError(
                f"{base}: no subfolder for classes {missing}; subfolders are {subdirs}."
            )
    files = list_image_files(base, extensions=extensions)
    if not files:
        raise DataError(
            f"{base}: no image files ({', '.join(extensions)}) found; the dataset would be "
            "empty. Put images in one subfolder per class."
        )
    rows: list[dict[str, Any]] = []
    problems: dict[int, str] = {}
    paths: list[str] = []
    for f in files:
        rel = f.relative_to(base)
        top = rel.parts[0] if len(rel.parts) > 1 else None
        if top is not None and top not in class_list:
            continue  # a subfolder that is not a requested class
        k = len(rows)
        if top is None:
            problems[k] = (
                "image is directly in the root folder, not in a class subfolder; move it into one"
            )
        rows.append({"id": rel.as_posix(), "label": top})
        paths.append(str(f))
    if not rows:
        raise DataError(f"{base}: no images in the class folders {class_list}.")
    frame = pd.DataFrame(rows).set_index("id")
    frame["label"] = frame["label"].astype(object)
    if problems:
        frame.loc[frame.index[list(problems)], "label"] = class_list[0] if class_list else "?"
    ds = ImageDataset(
        frame,
        FileImages(paths, dicom_options=dicom_options, max_aspect_ratio=max_aspect_ratio),
        label_column="label",
        classes=class_list,
        on_error=on_error,
        row_names=[f"{base.name}/{r['id']}" for r in rows],
        row_problems=problems,
        dicom_options=dicom_options,
    )
    return ds.validate() if validate else ds
