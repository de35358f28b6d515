"""Adapters for public datasets, reading the copy a user downloaded themselves.

Nothing is downloaded: each function reads the dataset's own metadata file with its
published column names and points at the images on disk. Metadata columns get
standard names (``patient_id``, ``age``, ``sex``, ``site``, ``group``...) so that splits
and audits work the same on every dataset.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from conceptlens._io import user_path
from conceptlens.data._dataset import ImageDataset, OnError
from conceptlens.data._manifest import read_table
from conceptlens.data._sources import FileImages
from conceptlens.exceptions import ConfigError, DataError

__all__ = [
    "CHESTXRAY14_LABELS",
    "CHEXPERT_LABELS",
    "HAM10000_CLASSES",
    "load_chestxray14",
    "load_chexpert",
    "load_fitzpatrick17k",
    "load_ham10000",
    "load_isic",
]

#: HAM10000 ``dx`` codes (sorted = class index order).
HAM10000_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")

#: The 14 NIH ChestX-ray14 findings ("No Finding" = all zero).
CHESTXRAY14_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

#: The 14 CheXpert observation columns of ``train.csv``/``valid.csv``.
CHEXPERT_LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)


def _require(frame: pd.DataFrame, columns: Sequence[str], source: Path, dataset: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: not a {dataset} metadata file; columns {missing} are missing "
            f"(found {list(frame.columns)})."
        )


def _index_images(dirs: Sequence[Path], suffixes: Sequence[str]) -> dict[str, Path]:
    """Map file stem -> path for every image under ``dirs`` (one directory walk)."""
    index: dict[str, Path] = {}
    for d in dirs:
        if not d.is_dir():
            raise DataError(f"image folder not found: {d}")
        for dirpath, _, files in os.walk(d):
            for name in files:
                stem, ext = os.path.splitext(name)
                if ext.lower() in suffixes:
                    index.setdefault(stem, Path(dirpath) / name)
                    index.setdefault(name, Path(dirpath) / name)
    return index


def _as_dirs(image_dir: str | os.PathLike[str] | Sequence[Any]) -> list[Path]:
    if isinstance(image_dir, str | os.PathLike):
        return [user_path(image_dir)]
    return [user_path(d) for d in image_dir]


def _paths(
    names: Sequence[str], dirs: list[Path], suffix: str, suffixes: Sequence[str]
) -> list[str]:
    """Resolve image names: one folder -> direct join; several -> one indexed walk."""
    if len(dirs) == 1:
        d = dirs[0]
        return [str(d / (n if Path(n).suffix.lower() in suffixes else n + suffix)) for n in names]
    index = _index_images(dirs, suffixes)
    return [
        str(index.get(n, dirs[0] / (n if Path(n).suffix.lower() in suffixes else n + suffix)))
        for n in names
    ]


def _age(series: pd.Series) -> pd.Series:
    """Ages as floats; strings like ``"058Y"`` (older NIH releases) are parsed."""
    if pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    text = series.astype("string").str.strip().str.rstrip("YyMmDd")
    return pd.to_numeric(text, errors="coerce").astype(float)


def load_ham10000(
    metadata_csv: str | os.PathLike[str],
    image_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    on_error: OnError = "raise",
) -> ImageDataset:
    """Load HAM10000 (ISIC 2018 task 3 training set) from ``HAM10000_metadata.csv``.

    Parameters
    ----------
    metadata_csv : path
        ``HAM10000_metadata.csv`` (``lesion_id,image_id,dx,dx_type,age,sex,localization``).
    image_dir : path or list of paths
        Folder(s) with ``<image_id>.jpg`` (the two ``HAM10000_images_part_*`` folders).
    on_error : {"raise", "skip"}

    Returns
    -------
    ImageDataset
        ids ``image_id``; label column ``dx`` with classes :data:`HAM10000_CLASSES`;
        metadata ``lesion_id`` (also as ``patient_id``: HAM10000 has no patient id, and
        images of one lesion must stay in one split), ``dx_type``, ``age``, ``sex``,
        ``localization``.
    """
    src = user_path(metadata_csv)
    frame = read_table(src, str_columns=("lesion_id", "image_id"))
    _require(frame, ["lesion_id", "image_id", "dx"], src, "HAM10000")
    meta = pd.DataFrame(
        {
            "dx": frame["dx"],
            "lesion_id": frame["lesion_id"],
            "patient_id": frame["lesion_id"],
            "dx_type": frame.get("dx_type"),
            "age": _age(frame["age"]) if "age" in frame else np.nan,
            "sex": frame.get("sex"),
            "localization": frame.get("localization"),
        }
    )
    meta.index = pd.Index(frame["image_id"].astype(str), name="id")
    paths = _paths(list(meta.index), _as_dirs(image_dir), ".jpg", (".jpg", ".jpeg", ".png"))
    return ImageDataset(
        meta,
        FileImages(paths),
        label_column="dx",
        classes=HAM10000_CLASSES,
        on_error=on_error,
        row_names=[f"{src.name} line {k + 2}" for k in range(len(meta))],
    )


def load_isic(
    ground_truth_csv: str | os.PathLike[str],
    image_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    metadata_csv: str | os.PathLike[str] | None = None,
    on_error: OnError = "raise",
) -> ImageDataset:
    """Load ISIC 2018/2019 classification ground truth (one-hot ``image,MEL,NV,...``).

    Parameters
    ----------
    ground_truth_csv : path
        ``ISIC_2019_Training_GroundTruth.csv`` (``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK``)
        or the ISIC 2018 task 3 ground truth (``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``).
        Each row must have exactly one 1.
    image_dir : path or list of paths
        Folder(s) with ``<image>.jpg``.
    metadata_csv : path, optional
        ``ISIC_2019_Training_Metadata.csv`` (``image,age_approx,anatom_site_general,
        lesion_id,sex``), joined on ``image``.
    on_error : {"raise", "skip"}

    Returns
    -------
    ImageDataset
        Label column ``dx`` (classes = the one-hot columns in file order); with metadata,
        ``age``, ``site_anatomic``, ``lesion_id`` (also ``patient_id``) and ``sex``.
    """
    src = user_path(ground_truth_csv)
    gt = read_table(src, str_columns=("image",))
    _require(gt, ["image"], src, "ISIC ground-truth")
    classes = [c for c in gt.columns if c != "image"]
    onehot = gt[classes].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    problems: dict[int, str] = {}
    for k, row in enumerate(onehot):
        if np.isnan(row).any() or not np.isin(row, (0.0, 1.0)).all() or row.sum() != 1:
            problems[k] = (
                f"one-hot columns {classes} hold {row.tolist()}; each row needs exactly one 1"
            )
    dx = [
        classes[int(np.nanargmax(r))] if k not in problems else classes[0]
        for k, r in enumerate(np.nan_to_num(onehot, nan=-1))
    ]
    meta = pd.DataFrame({"dx": dx}, index=pd.Index(gt["image"].astype(str), name="id"))
    if metadata_csv is not None:
        msrc = user_path(metadata_csv)
        extra = read_table(msrc, str_columns=("image", "lesion_id"))
        _require(extra, ["image"], msrc, "ISIC metadata")
        extra = extra.set_index(extra["image"].astype(str)).drop(columns=["image"])
        extra = extra.rename(columns={"age_approx": "age", "anatom_site_general": "site_anatomic"})
        if "lesion_id" in extra.columns:
            extra["patient_id"] = extra["lesion_id"]
        meta = meta.join(extra, how="left")
    paths = _paths(list(meta.index), _as_dirs(image_dir), ".jpg", (".jpg", ".jpeg", ".png"))
    return ImageDataset(
        meta,
        FileImages(paths),
        label_column="dx",
        classes=classes,
        on_error=on_error,
        row_names=[f"{src.name} line {k + 2}" for k in range(len(meta))],
        row_problems=problems,
    )


def _nih_columns(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.loc[:, [c for c in frame.columns if not str(c).startswith("Unnamed")]]
    return frame.rename(
        columns={
            "OriginalImage[Width": "original_width",
            "Height]": "original_height",
            "OriginalImagePixelSpacing[x": "pixel_spacing_x",
            "y]": "pixel_spacing_y",
        }
    )


def load_chestxray14(
    data_entry_csv: str | os.PathLike[str],
    image_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    labels: Sequence[str] = CHESTXRAY14_LABELS,
    on_error: OnError = "raise",
) -> ImageDataset:
    """Load NIH ChestX-ray14 from ``Data_Entry_2017.csv`` (multi-label).

    Parameters
    ----------
    data_entry_csv : path
        ``Data_Entry_2017.csv`` (``Image Index,Finding Labels,Follow-up #,Patient ID,
        Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],
        OriginalImagePixelSpacing[x,y]``).
    image_dir : path or list of paths
        The ``images_001`` ... ``images_012`` folders, or one folder above them
        (searched recursively once when it does not hold the images directly).
    labels : list of str
        Finding names, one 0/1 label column each; ``"No Finding"`` rows are all zero.
        A finding outside ``labels`` makes the row bad (nothing is dropped silently).
    on_error : {"raise", "skip"}

    Returns
    -------
    ImageDataset
        Multi-label columns ``labels``; metadata ``patient_id``, ``follow_up``, ``age``,
        ``sex``, ``view_position``, ``original_width``/``original_height``,
        ``pixel_spacing_x``/``pixel_spacing_y``, ``finding_labels`` (the raw string).
    """
    src = user_path(data_entry_csv)
    frame = _nih_columns(read_table(src, str_columns=("Image Index",)))
    _require(frame, ["Image Index", "Finding Labels", "Patient ID"], src, "ChestX-ray14")
    label_list = [str(x) for x in labels]
    lookup = {name: j for j, name in enumerate(label_list)}
    matrix = np.zeros((len(frame), len(label_list)), dtype=np.float32)
    problems: dict[int, str] = {}
    for k, cell in enumerate(frame["Finding Labels"]):
        if pd.isna(cell) or not str(cell).strip():
            problems[k] = "empty 'Finding Labels'; use 'No Finding' for normal images"
            continue
        for finding in str(cell).split("|"):
            finding = finding.strip()
            if finding == "No Finding":
                continue
            if finding not in lookup:
                problems[k] = f"unknown finding {finding!r}; known: {label_list}"
                break
            matrix[k, lookup[finding]] = 1.0
    meta = pd.DataFrame(matrix, columns=label_list)
    meta["patient_id"] = frame["Patient ID"].astype(str).to_numpy()
    optional = {
        "Follow-up #": "follow_up",
        "Patient Gender": "sex",
        "View Position": "view_position",
        "original_width": "original_width",
        "original_height": "original_height",
        "pixel_spacing_x": "pixel_spacing_x",
        "pixel_spacing_y": "pixel_spacing_y",
    }
    for col, name in optional.items():
        if col in frame.columns:
            meta[name] = frame[col].to_numpy()
    if "Patient Age" in frame.columns:
        meta["age"] = _age(frame["Patient Age"]).to_numpy()
    meta["finding_labels"] = frame["Finding Labels"].to_numpy()
    meta.index = pd.Index(frame["Image Index"].astype(str), name="id")
    dirs = _as_dirs(image_dir)
    names = list(meta.index)
    if len(dirs) == 1 and names and not (dirs[0] / names[0]).exists():
        index = _index_images(dirs, (".png",))
        paths = [str(index.get(n, dirs[0] / n)) for n in names]
    else:
        paths = _paths(names, dirs, ".png", (".png",))
    return ImageDataset(
        meta,
        FileImages(paths),
        label_columns=label_list,
        on_error=on_error,
        row_names=[f"{src.name} line {k + 2}" for k in range(len(meta))],
        row_problems=problems,
    )


def load_chexpert(
    csv: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    uncertain: Literal["zeros", "ones", "ignore"] = "zeros",
    labels: Sequence[str] = CHEXPERT_LABELS,
    on_error: OnError = "raise",
) -> ImageDataset:
    """Load CheXpert ``train.csv``/``valid.csv`` with an uncertainty policy.

    Parameters
    ----------
    csv : path
        ``train.csv`` (``Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,...``).
    root : path, optional
        Folder the ``Path`` column is relative to. Default: the CSV's parent folder if
        paths start with the CSV folder's name (``CheXpert-v1.0-small/train/...``), else
        the CSV's folder.
    uncertain : {"zeros", "ones", "ignore"}
        Uncertain labels (``-1``) become 0 (U-Zeros), 1 (U-Ones), or NaN (``ignore``:
        the sample's label for that observation is unknown; mask it in the loss).
        Blank cells (not mentioned) are 0 under every policy.
    labels : list of str
        Observation columns to use.
    on_error : {"raise", "skip"}

    Returns
    -------
    ImageDataset
        Multi-label columns ``labels``; metadata ``patient_id``, ``study``, ``sex``,
        ``age``, ``frontal_lateral``, ``ap_pa``.
    """
    if uncertain not in ("zeros", "ones", "ignore"):
        raise ConfigError(f"uncertain must be 'zeros', 'ones' or 'ignore', not {uncertain!r}.")
    src = user_path(csv)
    frame = read_table(src, str_columns=("Path",))
    label_list = [str(x) for x in labels]
    _require(frame, ["Path", *label_list], src, "CheXpert")
    values = frame[label_list].apply(pd.to_numeric, errors="coerce")
    unexpected = values.notna() & ~values.isin([-1.0, 0.0, 1.0])
    bad_text = frame[label_list].notna() & values.isna()
    problems: dict[int, str] = {}
    for k in np.flatnonzero((unexpected | bad_text).any(axis=1).to_numpy()):
        problems[int(k)] = "CheXpert labels must be 1, 0, -1 or blank"
    values = values.fillna(0.0)
    fill = {"zeros": 0.0, "ones": 1.0, "ignore": np.nan}[uncertain]
    values = values.mask(values == -1.0, fill).where(~(unexpected | bad_text), 0.0)
    meta = values.astype(np.float32)
    paths_rel = frame["Path"].astype(str)
    parts = paths_rel.str.split("/")
    meta["patient_id"] = [next((p for p in ps if p.startswith("patient")), "") for ps in parts]
    meta["study"] = [next((p for p in ps if p.startswith("study")), "") for ps in parts]
    for col, name in (
        ("Sex", "sex"),
        ("Age", "age"),
        ("Frontal/Lateral", "frontal_lateral"),
        ("AP/PA", "ap_pa"),
    ):
        if col in frame.columns:
            meta[name] = frame[col].to_numpy()
    meta.index = pd.Index(paths_rel, name="id")
    if root is None:
        first = Path(paths_rel.iloc[0]).parts if len(paths_rel) else ()
        base = src.resolve().parent
        root_dir = base.parent if first and first[0] == base.name else base
    else:
        root_dir = user_path(root)
    return ImageDataset(
        meta,
        FileImages([str(root_dir / p) for p in paths_rel]),
        label_columns=label_list,
        on_error=on_error,
        allow_missing_labels=uncertain == "ignore",
        row_names=[f"{src.name} line {k + 2}" for k in range(len(meta))],
        row_problems=problems,
    )


def load_fitzpatrick17k(
    csv: str | os.PathLike[str],
    image_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    label: Literal["three_partition_label", "nine_partition_label", "label"] = (
        "three_partition_label"
    ),
    on_error: OnError = "raise",
) -> ImageDataset:
    """Load Fitzpatrick17k (``fitzpatrick17k.csv``) with skin type as ``group``.

    Parameters
    ----------
    csv : path
        ``md5hash,fitzpatrick_scale,fitzpatrick_centaur,label,nine_partition_label,
        three_partition_label,qc,url,url_alphanum``.
    image_dir : path or list of paths
        Folder(s) with the images you downloaded, named ``<md5hash>.jpg``.
    label : str
        Which column is the class label (114 conditions, 9 or 3 partitions).
    on_error : {"raise", "skip"}
        Images that failed to download are missing files: ``"skip"`` lists them in
        ``ds.skipped`` as iteration reaches them (or all at once with ``ds.validate()``).

    Returns
    -------
    ImageDataset
        ids ``md5hash``; metadata ``group`` (Fitzpatrick type 1-6 as ``"FST1"``...
        ``"FST6"``, ``"unknown"`` for -1), ``fitzpatrick_scale``,
        ``fitzpatrick_centaur``, the three label columns and ``qc``. URLs are not kept.
    """
    src = user_path(csv)
    frame = read_table(src, str_columns=("md5hash",))
    _require(frame, ["md5hash", "fitzpatrick_scale", label], src, "Fitzpatrick17k")
    keep = [
        c
        for c in (
            "label",
            "nine_partition_label",
            "three_partition_label",
            "fitzpatrick_scale",
            "fitzpatrick_centaur",
            "qc",
        )
        if c in frame.columns
    ]
    meta = frame[keep].copy()
    scale = pd.to_numeric(frame["fitzpatrick_scale"], errors="coerce")
    meta["group"] = [
        f"FST{int(v)}" if not np.isnan(v) and 1 <= v <= 6 else "unknown" for v in scale
    ]
    meta.index = pd.Index(frame["md5hash"].astype(str), name="id")
    paths = _paths(list(meta.index), _as_dirs(image_dir), ".jpg", (".jpg", ".jpeg", ".png"))
    return ImageDataset(
        meta,
        FileImages(paths),
        label_column=label,
        on_error=on_error,
        row_names=[f"{src.name} line {k + 2}" for k in range(len(meta))],
    )
