"""``conceptlens report case|audit``: PDF reports from saved heads, scores and audits."""

from __future__ import annotations

from typing import Any

import click

from conceptlens._cli_options import (
    UserPath,
    allow_mismatch_option,
    model_option,
    out_option,
    read_scores,
    scores_option,
)

__all__ = ["report"]


@click.group(name="report")
def report() -> None:
    """PDF case and audit reports."""


def _read_image(path: str) -> Any:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from conceptlens._io import user_path
    from conceptlens.exceptions import DataError, MissingFileError

    p = user_path(path)
    if not p.exists():
        raise MissingFileError(f"--image {p}: no such file.")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"--image {p} is not a readable image ({exc}).") from exc


@report.command(name="case")
@model_option
@scores_option("Concept scores holding the case (netCDF).")
@allow_mismatch_option
@click.option("--sample", required=True, help="Sample id of the case (or its position).")
@click.option(
    "--image",
    "image_path",
    default=None,
    type=UserPath(dir_okay=False),
    help="The case's image, drawn on the first page.",
)
@click.option(
    "--reference",
    "reference_path",
    default=None,
    type=UserPath(),
    help="The head's training scores: what-if changes to absent/present levels.",
)
@click.option("--title", default=None, help="Report title.")
@out_option("PDF to write.", dir_okay=False)
def case_command(
    model_dir, scores_path, allow_score_mismatch, sample, image_path, reference_path, title, out
):
    """One image: prediction, contributing concepts, what-if changes, provenance."""
    from conceptlens.heads import load_head
    from conceptlens.reports import case_report

    scores = read_scores(scores_path)
    model = load_head(model_dir, scores=scores, allow_mismatch=allow_score_mismatch)
    reference = read_scores(reference_path, option="--reference") if reference_path else None
    ids = [str(s) for s in scores["sample"].values] if "sample" in scores.coords else []
    key: Any = sample
    if sample not in ids and sample.lstrip("-").isdigit():
        key = int(sample)
    image = _read_image(image_path) if image_path else None
    path = case_report(
        out, model, scores, key, image=image, reference_scores=reference, title=title
    )
    click.echo(f"wrote {path}")


@report.command(name="audit")
@click.option(
    "--audit",
    "audit_path",
    required=True,
    type=UserPath(dir_okay=False),
    help="Audit Dataset written by `conceptlens audit --out`.",
)
@click.option(
    "--model",
    "model_spec",
    default=None,
    help="The concept head to describe, NAME=FOLDER (NAME as in the audit) or FOLDER.",
)
@click.option(
    "--scores",
    "scores_path",
    default=None,
    type=UserPath(),
    help="The audited scores (data fingerprint, shortcut finder).",
)
@click.option(
    "--shortcuts/--no-shortcuts",
    default=True,
    show_default=True,
    help="Run the shortcut finder (needs --model and --scores).",
)
@click.option(
    "--by", default="site", show_default=True, help="Metadata column the shortcut finder compares."
)
@click.option("--description", default=None, help="The data in words.")
@click.option("--title", default="Concept-model audit", show_default=True)
@out_option("PDF to write.", dir_okay=False)
def audit_command(audit_path, model_spec, scores_path, shortcuts, by, description, title, out):
    """A study: findings in words, metric tables with intervals, shortcuts, provenance."""
    from conceptlens.heads import load_head
    from conceptlens.reports import audit_report
    from conceptlens.studies import find_shortcuts, load_audit

    audit = load_audit(audit_path)
    name, model = None, None
    if model_spec:
        name, _, folder = model_spec.rpartition("=")
        model = load_head(folder)
    scores = read_scores(scores_path) if scores_path else None
    table = (
        find_shortcuts(model, scores, by=by)
        if shortcuts and model is not None and scores is not None
        else None
    )
    path = audit_report(
        out,
        audit,
        model=model,
        model_name=name or None,
        scores=scores,
        shortcuts=table,
        description=description,
        title=title,
    )
    click.echo(f"wrote {path}")
