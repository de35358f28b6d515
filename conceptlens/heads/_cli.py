"""``conceptlens fit``: fit a concept-bottleneck head on a netCDF file of concept scores."""

from __future__ import annotations

import click

from conceptlens._cli_options import UserPath

__all__ = ["fit"]


@click.command(name="fit")
@click.option(
    "--scores",
    "scores_path",
    required=True,
    type=UserPath(),
    help="netCDF (.nc) or zarr file holding a `concept_score` DataArray (sample, concept).",
)
@click.option(
    "--label-column", "--label", "label", required=True, help="Sample coordinate with the labels."
)
@click.option(
    "--out",
    "out",
    required=True,
    type=UserPath(file_okay=False),
    help="Output model folder (head.safetensors + head.json + metrics.nc).",
)
@click.option(
    "--C",
    "C",
    type=float,
    default=None,
    help="Fixed inverse penalty; default: select along the path.",
)
@click.option("--l1-ratio", type=float, default=0.5, show_default=True)
@click.option("--n-cs", type=int, default=50, show_default=True, help="Path length.")
@click.option(
    "--max-concepts-per-class",
    type=int,
    default=None,
    help="Select the best path point with at most this many concepts per class.",
)
@click.option(
    "--split-column",
    default=None,
    help="Sample coordinate with values train/val/test (val selects C; test is "
    "reported). Default: a seeded stratified 80/20 split for selection.",
)
@click.option("--group-column", default=None, help="Report per-group and worst-group metrics.")
@click.option("--n-boot", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def fit(
    scores_path,
    label,
    out,
    C,
    l1_ratio,
    n_cs,
    max_concepts_per_class,
    split_column,
    group_column,
    n_boot,
    seed,
):
    """Fit a sparse concept-bottleneck head and print metrics with bootstrap CIs."""

    import numpy as np
    import xarray as xr

    from conceptlens._cli_options import read_scores
    from conceptlens.exceptions import DataError
    from conceptlens.heads._estimators import ConceptBottleneckClassifier
    from conceptlens.heads._io import save_head
    from conceptlens.heads._metrics import classification_metrics

    scores = read_scores(scores_path)
    for col in (label, split_column, group_column):
        if col is not None and col not in scores.coords:
            raise DataError(
                f"column {col!r} is not a sample coordinate of {scores_path}; available: "
                f"{sorted(k for k in scores.coords if scores[k].dims == ('sample',))}."
            )
    y = scores[label].values
    if split_column is not None:
        split = np.asarray(scores[split_column].values).astype(str)
        bad = sorted(set(split) - {"train", "val", "test"})
        if bad:
            raise DataError(
                f"split column {split_column!r} has values {bad[:5]}; use train/val/test."
            )
        fit_rows = split != "test"
        val_mask = (split == "val")[fit_rows]
        eval_sets = {"val": split == "val", "test": split == "test"}
    else:
        fit_rows = np.ones(len(y), dtype=bool)
        val_mask = None
        eval_sets = {"train": fit_rows}
    model = ConceptBottleneckClassifier(
        C=C,
        l1_ratio=l1_ratio,
        Cs=n_cs,
        max_concepts_per_class=max_concepts_per_class,
        random_state=seed,
    )
    model.fit(scores[fit_rows], y[fit_rows], validation_mask=val_mask if C is None else None)
    lines = []
    results = []
    for name, rows in eval_sets.items():
        if not rows.any():
            continue
        proba = model.predict_proba(scores[rows])
        groups = scores[group_column].values[rows] if group_column else None
        m = classification_metrics(
            y[rows], proba, classes=model.classes_, groups=groups, n_boot=n_boot, seed=seed
        )
        results.append(m.expand_dims(split=[name]))
        for g in m.group.values:
            for metric in m.metric.values:
                e = m.sel(group=g, metric=metric)
                lines.append(
                    f"{name:6s} {g!s:12s} {metric:18s} {float(e.estimate):.3f} "
                    f"[{float(e.ci_low):.3f}, {float(e.ci_high):.3f}]"
                )
    metrics = xr.concat(results, dim="split")
    # one atomic folder: head + metrics together, never a new head next to old metrics
    out_dir = save_head(
        model, out, trained_on=scores, extra_files={"metrics.nc": metrics.to_netcdf}
    )
    nnz = (model.coef_ != 0).sum("concept")
    click.echo(
        f"selected C = {getattr(model, 'C_', C):.4g}; concepts per class: "
        + ", ".join(f"{c}={int(v)}" for c, v in zip(nnz["class"].values, nnz.values, strict=True))
    )
    click.echo("split  group        metric             value [95% CI]")
    for line in lines:
        click.echo(line)
    for cls in model.coef_["class"].values:
        top = model.top_concepts(cls, k=5)
        click.echo(
            f"top concepts for {cls}: "
            + ", ".join(
                f"{c} ({w:+.2f})" for c, w in zip(top.concept.values, top.values, strict=True)
            )
        )
    click.echo(f"saved model to {out_dir}")
