"""``conceptlens data ...`` commands."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import click

from conceptlens._cli_options import (
    UserPath,
    label_column_option,
    path_column_option,
    printable,
    root_option,
)
from conceptlens._label_check import same_spelling
from conceptlens.synthderm._cli_data import synthderm

__all__ = ["data", "dataset_report", "manifest_file", "open_dataset"]

# A class this many times rarer than the most common one is flagged as imbalance.
IMBALANCE_RATIO = 10.0
# Metadata columns counted by `data info` when present.
BREAKDOWN_COLUMNS = ("split", "site", "group", "sex", "view_position", "localization")
# A folder holding one of these is a dataset described by its manifest (`data synthderm`).
MANIFEST_NAMES = ("manifest.csv", "manifest.parquet")


def manifest_file(path: str | Path, option: str = "--data") -> Path:
    """``path``, or the manifest inside it when it is a folder ``data synthderm`` wrote."""
    from conceptlens._io import user_path
    from conceptlens.exceptions import DataError

    p = user_path(path)
    if not p.is_dir():
        return p
    for name in MANIFEST_NAMES:
        if (p / name).is_file():
            return p / name
    raise DataError(
        f"{option} {p} is a folder without {' or '.join(MANIFEST_NAMES)}; give the manifest "
        "file (CSV or Parquet with a column of image paths)"
    )


@click.group(name="data")
def data() -> None:
    """Inspect datasets; generate SynthDerm."""


def open_dataset(
    path: str | Path,
    *,
    root: str | None = None,
    path_column: str = "path",
    label_column: str | None = "label",
    label_columns: list[str] | None = None,
    dicom_frame: str = "error",
) -> Any:
    """Open a folder, manifest (CSV/Parquet), ``.npz`` or DICOM file/folder in skip mode.

    A folder holding ``manifest.csv`` (or ``manifest.parquet``), as ``conceptlens data
    synthderm`` writes, is read through that manifest, not as a class-per-folder tree.
    """
    from conceptlens._io import user_path
    from conceptlens.data._dicom import DicomOptions, load_dicom
    from conceptlens.data._folder import load_folder
    from conceptlens.data._images import is_dicom_path
    from conceptlens.data._manifest import load_manifest
    from conceptlens.data._npz import load_npz
    from conceptlens.exceptions import MissingFileError

    p = user_path(path)
    frame: Any = int(dicom_frame) if dicom_frame.isdigit() else dicom_frame
    options = DicomOptions(frame=frame)
    if not p.exists():
        raise MissingFileError(f"no such file or folder: {p}")
    if p.is_dir():
        if any((p / n).is_file() for n in MANIFEST_NAMES):
            p = manifest_file(p)
        elif any(c.is_dir() and not c.name.startswith(".") for c in p.iterdir()):
            return load_folder(p, on_error="skip", dicom_options=options)
        else:
            return load_dicom(p, options=options, on_error="skip")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return load_npz(p, on_error="skip")
    if is_dicom_path(p):
        return load_dicom(p, options=options, on_error="skip")
    return load_manifest(
        p,
        root=root,
        path_column=path_column,
        label_column=label_column,
        label_columns=label_columns,
        on_error="skip",
        dicom_options=options,
    )


def dataset_report(ds: Any, *, check_images: bool = True) -> dict[str, Any]:
    """Counts and problems of a dataset opened in skip mode (used by ``data info``).

    Returns a JSON-ready dict: ``n_samples``, ``classes``, ``label_counts``, per-column
    ``breakdown`` counts, ``errors`` (one string per bad sample: missing file, unreadable
    image, bad label, duplicate id) and ``warnings`` (label imbalance).
    """
    if check_images:
        ds = ds.validate()
    meta = ds.metadata
    report: dict[str, Any] = {
        "n_samples": len(ds),
        "classes": ds.classes,
        "label_columns": ds.label_columns,
        "multilabel": ds.is_multilabel,
        "masks": ds.mask_names,
        "images_checked": bool(check_images),
    }
    labels = ds.labels
    counts: dict[str, int] = {}
    if labels is not None and ds.is_multilabel:
        for j, c in enumerate(ds.classes):
            counts[c] = int((labels[:, j] == 1).sum())
        unknown = {c: int(v) for c, v in zip(ds.classes, (labels != labels).sum(0), strict=True)}
        if any(unknown.values()):
            report["label_unknown_counts"] = unknown
    elif labels is not None:
        tally = Counter(labels.tolist())
        counts = {c: int(tally.get(k, 0)) for k, c in enumerate(ds.classes)}
    report["label_counts"] = counts
    breakdown: dict[str, dict[str, int]] = {}
    for col in BREAKDOWN_COLUMNS:
        if col in meta.columns:
            vc = meta[col].astype("string").fillna("<missing>").value_counts(sort=False)
            breakdown[col] = {str(k): int(v) for k, v in sorted(vc.items())}
    report["breakdown"] = breakdown
    report["errors"] = [str(s) for s in ds.skipped]
    warnings: list[str] = []
    if counts:
        nonzero = [v for v in counts.values() if v > 0]
        empty = [c for c, v in counts.items() if v == 0]
        if empty:
            warnings.append(f"classes with no samples: {empty}")
        if nonzero and max(nonzero) / min(nonzero) >= IMBALANCE_RATIO:
            rare = min(counts, key=lambda c: counts[c] if counts[c] > 0 else float("inf"))
            common = max(counts, key=lambda c: counts[c])
            warnings.append(
                f"label imbalance: {common!r} has {counts[common]} samples, {rare!r} only "
                f"{counts[rare]} (ratio {counts[common] / counts[rare]:.1f} >= "
                f"{IMBALANCE_RATIO:g}); consider stratified splits and class weights"
            )
    folded: dict[str, list[str]] = {}
    for c in counts:
        folded.setdefault(same_spelling(str(c)), []).append(str(c))
    for group in folded.values():
        if len(group) > 1:
            warnings.append(
                f"labels {', '.join(map(repr, group))} differ only in case, spacing or Unicode "
                "form and count as separate classes; use one spelling (score and fit stop on "
                "them)"
            )
    report["warnings"] = warnings
    return report


def _print_report(path: str, r: dict[str, Any]) -> None:
    def echo(text: str, err: bool = False) -> None:
        click.echo(printable(text), err=err)

    echo(f"{path}: {r['n_samples']} readable samples")
    if r["label_counts"]:
        kind = "multi-label positives" if r["multilabel"] else "labels"
        echo(f"{kind} ({len(r['classes'])} classes):")
        shown = {
            c: c if c.strip() == c and c.isprintable() else repr(c) for c in r["label_counts"]
        }
        width = max(len(c) for c in shown.values())
        for c, v in r["label_counts"].items():
            echo(f"  {shown[c]:<{width}}  {v}")
    else:
        echo("labels: none")
    for col, vc in r["breakdown"].items():
        echo(f"by {col}: " + ", ".join(f"{k}={v}" for k, v in vc.items()))
    if r["masks"]:
        echo(f"masks: {', '.join(r['masks'])}")
    if not r["images_checked"]:
        echo("images: not decoded (--no-check-images)")
    for w in r["warnings"]:
        echo(f"warning: {w}")
    if r["errors"]:
        echo(f"{len(r['errors'])} problem(s):", err=True)
        for e in r["errors"]:
            echo(f"  - {e}", err=True)


@data.command("info")
@click.argument("path", type=UserPath())
@root_option
@path_column_option
@label_column_option
@click.option(
    "--label-columns",
    default=None,
    help="Comma-separated multi-label 0/1 columns (instead of --label-column).",
)
@click.option(
    "--check-images/--no-check-images",
    default=True,
    show_default=True,
    help="Decode every image and mask (finds corrupt files; slower).",
)
@click.option(
    "--dicom-frame", default="error", show_default=True, help="Multi-frame DICOM: error|first|N."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--allow-errors", is_flag=True, help="Exit 0 even when some samples are unreadable.")
def info(
    path: str,
    root: str | None,
    path_column: str,
    label_column: str,
    label_columns: str | None,
    check_images: bool,
    dicom_frame: str,
    as_json: bool,
    allow_errors: bool,
) -> None:
    """Counts by label, site/group and split, and every problem found in PATH.

    PATH is a class-per-folder directory, a CSV/Parquet manifest (or a folder holding
    manifest.csv, as `conceptlens data synthderm` writes), a MedMNIST-style .npz, or a
    DICOM file/folder. Exits with status 1 if any sample is bad (missing or
    unreadable file, bad label, duplicate id) unless --allow-errors; label imbalance
    is a warning only.
    """
    ds = open_dataset(
        path,
        root=root,
        path_column=path_column,
        label_column=label_column,
        label_columns=label_columns.split(",") if label_columns else None,
        dicom_frame=dicom_frame,
    )
    report = dataset_report(ds, check_images=check_images)
    report["path"] = str(path)
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        _print_report(path, report)
    if report["errors"] and not allow_errors:
        from conceptlens.exceptions import DataError

        raise DataError(
            f"{len(report['errors'])} problem(s) in {path} (listed above); fix them, or "
            "pass --allow-errors to exit with status 0"
        )


data.add_command(synthderm)
