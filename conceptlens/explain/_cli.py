"""``conceptlens explain``: per-sample concept contributions of a fitted head."""

from __future__ import annotations

from pathlib import Path

import click

from conceptlens._cli_options import (
    UserPath,
    allow_mismatch_option,
    echo_info,
    model_option,
    printable,
    read_head_and_scores,
    read_scores,
    scores_option,
)

__all__ = ["explain"]


@click.command(name="explain")
@model_option
@scores_option("netCDF file of concept scores to explain.")
@allow_mismatch_option
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=UserPath(file_okay=False),
    help="Output folder: contributions.nc and contributions.csv.",
)
@click.option(
    "--background",
    "background_path",
    default=None,
    type=UserPath(),
    help="Training scores (needed for heads fitted without standardisation).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Concepts printed per case.",
)
@click.option(
    "--cases",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Cases printed (0: none).",
)
def explain(model_dir, scores_path, allow_score_mismatch, out_dir, background_path, top, cases):
    """Write each sample's concept contributions and print the top concepts per case.

    A contribution is weight x (score - training mean) in logit space, the exact
    interventional SHAP value of the linear head; per sample and class, the
    contributions plus the base value add up to the logit.
    """
    import numpy as np

    from conceptlens._io import atomic_path, atomic_write_text
    from conceptlens.explain import contributions

    model, scores = read_head_and_scores(model_dir, scores_path, allow_score_mismatch)
    background = read_scores(background_path, option="--background") if background_path else None
    c = contributions(model, scores, background=background)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "contributions.nc") as tmp:
        c.to_netcdf(tmp)
    logit = (c.sum("concept") + c["base_value"]).transpose("sample", "class")
    table = (
        c.drop_vars([k for k in c.coords if k not in ("sample", "class", "concept", "score")])
        .to_dataframe()
        .reset_index()
    )
    table = table.merge(
        logit.rename("logit").to_dataframe().reset_index()[["sample", "class", "logit"]],
        on=["sample", "class"],
    )
    table["base_value"] = table["class"].map(
        dict(zip(c["class"].values, c["base_value"].values, strict=True))
    )
    atomic_write_text(out / "contributions.csv", table.to_csv(index=False))
    pred = np.asarray(c["class"].values)[logit.values.argmax(axis=1)]
    sample_ids = c["sample"].values if "sample" in c.coords else np.arange(c.sizes["sample"])
    truth = scores["label"].values if "label" in scores.coords else None
    for i in range(min(int(cases), c.sizes["sample"])):
        row = c.isel(sample=i).sel({"class": pred[i]})
        order = np.argsort(-np.abs(row.values), kind="stable")[: int(top)]
        parts = ", ".join(
            f"{row.concept.values[j]} ({row.values[j]:+.2f})" for j in order if row.values[j]
        )
        true = f", true {truth[i]}" if truth is not None else ""
        click.echo(
            printable(
                f"{sample_ids[i]}: {pred[i]} (logit {float(logit[i].max()):+.2f}{true}) <- {parts}"
            )
        )
    echo_info(
        f"wrote {out / 'contributions.nc'} and {out / 'contributions.csv'} "
        f"({c.sizes['sample']} samples x {c.sizes['class']} classes x "
        f"{c.sizes['concept']} concepts)"
    )
