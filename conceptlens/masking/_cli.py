"""``conceptlens mask``: fit test-time concept masking at a new site, save it, apply it."""

from __future__ import annotations

import click

from conceptlens._cli_options import (
    FiniteFloat,
    UserPath,
    allow_mismatch_option,
    echo_info,
    model_option,
    read_head_and_scores,
    scores_option,
)
from conceptlens.masking._ttm import RULE_NAMES

__all__ = ["mask"]


@click.group(name="mask")
def mask():
    """Test-time concept masking: adapt a fitted head to a new site without retraining."""


@mask.command(name="fit")
@model_option
@scores_option("netCDF scores of labelled target-site images.")
@allow_mismatch_option
@click.option(
    "--label-column",
    "--label",
    "label",
    default="label",
    show_default=True,
    help="Sample coordinate with the labels.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=UserPath(dir_okay=False),
    help="Adapter file to write (JSON).",
)
@click.option(
    "--shots",
    type=click.IntRange(min=1),
    default=None,
    help="Use only this many labelled images per class, drawn with --seed "
    "(default: every sample in --scores).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--source-scores",
    default=None,
    type=UserPath(),
    help="Training scores (enables amplification and the source-accuracy check).",
)
@click.option("--mask", "mask_names", multiple=True, help="Concept always masked (repeatable).")
@click.option(
    "--mask-group",
    "mask_groups",
    multiple=True,
    help="Concept group always masked, e.g. artifact (repeatable).",
)
@click.option(
    "--rule",
    type=click.Choice(RULE_NAMES),
    default="greedy",
    show_default=True,
    help="greedy: mask label-linked confounders; recentre: undo an imaging-protocol shift "
    "(needs --source-scores); recentre+greedy: both.",
)
@click.option("--no-rule", is_flag=True, help="Only the user masks; no data-driven rule.")
@click.option("--max-masked", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--max-amplified", type=click.IntRange(min=0), default=3, show_default=True)
@click.option(
    "--recentre-threshold",
    type=FiniteFloat(min=0),
    default=0.5,
    show_default=True,
    help="recentre rules: smallest class-balanced shift of a concept's mean, in training "
    "standard deviations, that is undone.",
)
@click.option(
    "--min-gain",
    type=FiniteFloat(min=0),
    default=0.01,
    show_default=True,
    help="Smallest decrease of the target-shot loss (nats) an action must bring.",
)
@click.option(
    "--max-source-drop",
    type=FiniteFloat(min=0),
    default=None,
    help="With --source-scores: take no action that lowers source accuracy by more than "
    "this (0: it must not fall).",
)
def fit_cmd(
    model_dir,
    scores_path,
    allow_score_mismatch,
    label,
    out_path,
    shots,
    seed,
    source_scores,
    mask_names,
    mask_groups,
    rule,
    no_rule,
    max_masked,
    max_amplified,
    recentre_threshold,
    min_gain,
    max_source_drop,
):
    """Choose the concepts to mask/amplify from a few labelled target images."""
    import numpy as np

    from conceptlens._cli_options import read_scores
    from conceptlens.exceptions import DataError
    from conceptlens.masking import TestTimeMasking

    model, scores = read_head_and_scores(model_dir, scores_path, allow_score_mismatch)
    if label not in scores.coords:
        raise DataError(f"label column {label!r} is not a sample coordinate of {scores_path}.")
    y = np.asarray(scores[label].values).astype(str)
    if shots is not None:
        rng = np.random.default_rng(seed)
        idx = []
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            if len(rows) < shots:
                raise DataError(
                    f"class {c!r} has {len(rows)} labelled target image(s), fewer than "
                    f"--shots {shots}."
                )
            idx.append(rng.choice(rows, shots, replace=False))
        sel = np.sort(np.concatenate(idx))
        scores, y = scores.isel(sample=sel), y[sel]
    src, ys = None, None
    if source_scores:
        src = read_scores(source_scores, option="--source-scores")
        if label not in src.coords:
            raise DataError(
                f"label column {label!r} is not a sample coordinate of {source_scores}."
            )
        ys = np.asarray(src[label].values).astype(str)
    ttm = TestTimeMasking(
        model,
        mask=list(mask_names) or None,
        mask_groups=list(mask_groups) or None,
        rule=None if no_rule else rule,
        max_masked=max_masked,
        max_amplified=max_amplified,
        recentre_threshold=recentre_threshold,
        min_gain=min_gain,
        source_scores=src,
        source_labels=ys,
        max_source_drop=max_source_drop,
    ).fit(scores, y)
    path = ttm.save(out_path)
    rep = ttm.report()
    if len(rep):
        for _, r in rep.iterrows():
            click.echo(
                f"{r['action']:8s} {r['concept']:28s} a={r['scale']:+.3f} "
                f"b={r['shift']:+.3f}  {r['reason']}"
            )
    else:
        click.echo("no concept masked, amplified or re-centred")
    click.echo(
        f"target-shot loss {rep.attrs['target_loss_before']:.3f} -> "
        f"{rep.attrs['target_loss_after']:.3f} on {len(y)} labelled images"
    )
    if "source_accuracy_before" in rep.attrs:
        click.echo(
            f"source accuracy {rep.attrs['source_accuracy_before']:.3f} -> "
            f"{rep.attrs['source_accuracy_after']:.3f}"
        )
    echo_info(f"saved adapter to {path}")


@mask.command(name="apply")
@model_option
@click.option(
    "--adapter",
    "adapter_path",
    required=True,
    type=UserPath(dir_okay=False),
    help="File written by `conceptlens mask fit`.",
)
@scores_option("netCDF scores of the images to predict.")
@allow_mismatch_option
@click.option(
    "--out",
    "out_path",
    required=True,
    type=UserPath(dir_okay=False),
    help="CSV of predictions and class probabilities.",
)
@click.option(
    "--label-column",
    "--label",
    "label",
    default=None,
    help="Sample coordinate with labels: print accuracy.",
)
def apply_cmd(model_dir, adapter_path, scores_path, allow_score_mismatch, out_path, label):
    """Predict with the adapted model (source head + fitted masking)."""
    import numpy as np
    import pandas as pd

    from conceptlens._io import atomic_write_text
    from conceptlens.masking import TestTimeMasking

    model, scores = read_head_and_scores(model_dir, scores_path, allow_score_mismatch)
    ttm = TestTimeMasking.load(adapter_path, model)
    proba = ttm.predict_proba(scores)
    pred = ttm.predict(scores)
    source_pred = np.asarray(model.predict(scores))
    table = pd.DataFrame(
        proba, columns=[f"proba_{c}" for c in ttm.classes_], index=scores["sample"].values
    )
    table.insert(0, "prediction", pred)
    table.insert(1, "source_prediction", source_pred)
    table.index.name = "sample"
    atomic_write_text(out_path, table.to_csv())
    click.echo(f"{(pred != source_pred).sum()} of {len(pred)} predictions changed by the adapter")
    if label is not None and label in scores.coords:
        y = np.asarray(scores[label].values).astype(str)
        click.echo(
            f"accuracy: source {np.mean(source_pred.astype(str) == y):.3f}, adapted "
            f"{np.mean(pred.astype(str) == y):.3f}"
        )
    echo_info(f"wrote {out_path}")
