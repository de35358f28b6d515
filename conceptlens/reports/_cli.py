"""``conceptlens report case|audit``: PDF reports from saved heads, scores and audits."""

from __future__ import annotations

from typing import Any

import click

from conceptlens._cli_options import (
    UserPath,
    allow_mismatch_option,
    cache_dir_option,
    echo_info,
    model_option,
    out_option,
    read_head_and_scores,
    read_scores,
    scores_option,
    weights_option,
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
@click.option(
    "--sample",
    required=True,
    help="Sample id of the case (or its position, when the ids are not numbers).",
)
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
@click.option(
    "--maps/--no-maps",
    default=None,
    help="Draw where the top concepts are on the image (patch similarity maps from the "
    "backbone and bank the scores were made with).  [default: with --image, when that "
    "backbone loads offline]",
)
@click.option(
    "--bank",
    "bank_spec",
    default=None,
    help="Concept bank name or file for the maps.  [default: the scores' bank]",
)
@weights_option
@cache_dir_option
@click.option("--title", default=None, help="Report title.")
@out_option("PDF to write.", dir_okay=False)
def case_command(
    model_dir,
    scores_path,
    allow_score_mismatch,
    sample,
    image_path,
    reference_path,
    maps,
    bank_spec,
    weights,
    cache_dir,
    title,
    out,
):
    """One image: prediction, contributing concepts, what-if changes, provenance."""
    from conceptlens.exceptions import DataError
    from conceptlens.reports import case_report

    # the PDF says whether its one case was a training sample: no file-wide warning
    model, scores = read_head_and_scores(model_dir, scores_path, allow_score_mismatch, warn=False)
    reference = read_scores(reference_path, option="--reference") if reference_path else None
    ids = [str(s) for s in scores["sample"].values] if "sample" in scores.coords else []
    key: Any = sample
    if sample not in ids and sample.lstrip("-").isdigit():
        numeric = [i for i in ids if i.lstrip("-").isdigit()]
        if numeric:
            # ids such as "0005": "5" is more likely a mistyped id than a position
            raise DataError(
                f"--sample {sample} is not a sample id, and the ids are numbers (e.g. "
                f"{numeric[:3]}), so reading it as a position would be a guess; give the id "
                "exactly as in the scores."
            )
        key = int(sample)
    image = _read_image(image_path) if image_path else None
    if maps and image is None:
        raise click.UsageError("--maps needs --image (the maps are drawn over the image).")
    concept_maps = None
    if image is not None and maps is not False:
        concept_maps = _case_maps(
            scores, image, bank_spec, weights, cache_dir, required=bool(maps)
        )
    path = case_report(
        out,
        model,
        scores,
        key,
        image=image,
        reference_scores=reference,
        concept_maps=concept_maps,
        title=title,
    )
    echo_info(f"wrote {path}")


def _case_maps(
    scores: Any, image: Any, bank_spec: Any, weights: Any, cache_dir: Any, *, required: bool
) -> Any:
    """Concept maps of one image with the backbone and bank recorded in the scores' attrs.

    The backbone and bank must be the very ones the scores came from (same fingerprints),
    or the maps would show other concepts than the report explains.  When the maps were
    not asked for explicitly, a backbone that cannot be loaded here leaves them out with a
    note instead of failing the report.
    """
    import json
    from pathlib import Path

    from conceptlens._io import cache_root
    from conceptlens.backbones import load_backbone
    from conceptlens.concepts import concept_text_embeddings, load_bank
    from conceptlens.exceptions import ConceptLensError
    from conceptlens.spatial import concept_maps

    attrs = scores.attrs
    name, bank_name = attrs.get("backbone"), bank_spec or attrs.get("bank_id")
    try:
        if not name or not bank_name:
            raise ConceptLensError(
                "the scores do not record the backbone and bank they were made with "
                "(attrs 'backbone' and 'bank_id'; `conceptlens score` writes them)"
            )
        backbone = load_backbone(name, weights=weights) if weights else load_backbone(name)
        want = attrs.get("backbone_fingerprint")
        if want and backbone.fingerprint != want:
            raise ConceptLensError(
                f"backbone {name!r} loaded here has fingerprint {backbone.fingerprint}, the "
                f"scores were made with {want}; pass --weights with the weights used for "
                "the scores"
            )
        bank = load_bank(bank_name)
        want = attrs.get("bank_fingerprint")
        if want and bank.fingerprint != want:
            raise ConceptLensError(
                f"bank {bank_name!r} has fingerprint {bank.fingerprint[:16]}..., the scores "
                f"were made with {str(want)[:16]}...; pass --bank with the bank file used "
                "for the scores"
            )
        templates = json.loads(attrs["templates"]) if "templates" in attrs else None
        cache = Path(cache_dir) if cache_dir is not None else cache_root()
        # the text embeddings `score` cached: the backbone keeps them for concept_maps
        concept_text_embeddings(backbone, bank, templates=templates, reference=True, cache=cache)
        return concept_maps(
            backbone, image[None], bank, mode="relative", templates=templates, resize=True
        )
    except (ConceptLensError, OSError) as exc:
        if required:
            raise
        click.echo(f"concept maps left out: {exc} (--no-maps silences this)", err=True)
        return None


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
@allow_mismatch_option
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
def audit_command(
    audit_path,
    model_spec,
    scores_path,
    allow_score_mismatch,
    shortcuts,
    by,
    description,
    title,
    out,
):
    """A study: findings in words, metric tables with intervals, shortcuts, provenance."""
    from conceptlens.heads import load_head
    from conceptlens.reports import audit_report
    from conceptlens.studies import find_shortcuts, load_audit

    audit = load_audit(audit_path)
    name, model = None, None
    scores = read_scores(scores_path) if scores_path else None
    if model_spec:
        name, _, folder = model_spec.rpartition("=")
        model = load_head(folder, scores=scores, allow_mismatch=allow_score_mismatch)
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
    echo_info(f"wrote {path}")
