"""``conceptlens fit`` and ``conceptlens predict``: heads on netCDF files of concept scores."""

from __future__ import annotations

import click

from conceptlens._cli_options import (
    FiniteFloat,
    UserPath,
    allow_mismatch_option,
    echo_info,
    model_option,
    printable,
    read_head_and_scores,
    scores_option,
)

__all__ = ["fit", "predict"]

_SPLITS = ("train", "val", "test")


def _default_split(scores, y, seed):
    """Stratified 70/15/15 train/val/test split, grouped by ``patient_id`` when present."""
    import numpy as np
    import pandas as pd

    from conceptlens.data import make_splits

    ids = [str(s) for s in scores["sample"].values]
    meta = pd.DataFrame({"label": np.asarray(y).astype(str)}, index=ids)
    grouped = "patient_id" in scores.coords and scores["patient_id"].dims == ("sample",)
    if grouped:
        meta["patient_id"] = np.asarray(scores["patient_id"].values).astype(str)
    parts = make_splits(
        meta,
        strategy="group" if grouped else "stratified",
        stratify_column="label",
        group_column="patient_id",
        seed=seed,
    )
    where = {i: name for name, members in parts.items() for i in members}
    split = np.array([where[i] for i in ids])
    how = "grouped by patient_id, " if grouped else ""
    note = (
        f"no --split-column: made a {how}stratified 70/15/15 train/val/test split "
        f"(seed {seed}); pass --split-column to use your own"
    )
    return split, note


@click.command(name="fit")
@click.option(
    "--scores",
    "scores_path",
    required=True,
    type=UserPath(),
    help="netCDF (.nc) or zarr file holding a `concept_score` DataArray (sample, concept).",
)
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
    "out",
    required=True,
    type=UserPath(file_okay=False),
    help="Output model folder (head.safetensors + head.json + metrics.nc).",
)
@click.option(
    "--C",
    "C",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Fixed inverse penalty; default: select along the path on the val rows.",
)
@click.option("--l1-ratio", type=FiniteFloat(0, 1), default=0.5, show_default=True)
@click.option(
    "--n-cs", type=click.IntRange(min=1), default=50, show_default=True, help="Path length."
)
@click.option(
    "--max-concepts-per-class",
    type=click.IntRange(min=1),
    default=None,
    help="Select the best path point with at most this many concepts per class.",
)
@click.option(
    "--split-column",
    default=None,
    help="Sample coordinate with values train/val/test: the head is fitted on train, C "
    "is selected on val, test is held out. Default: a seeded stratified 70/15/15 split "
    "(grouped by patient_id when the scores have it).",
)
@click.option("--group-column", default=None, help="Report per-group and worst-group metrics.")
@click.option(
    "--accept-label",
    "accept_labels",
    multiple=True,
    help="Keep this label as a class although it is rare (< 2 training rows) or not "
    "among the bank's classes (repeatable).",
)
@click.option("--n-boot", type=click.IntRange(min=0), default=1000, show_default=True)
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
    accept_labels,
    n_boot,
    seed,
):
    """Fit a sparse concept-bottleneck head and print held-out metrics with bootstrap CIs.

    The head is fitted on the train rows only, C is selected on the val rows, and every
    metric comes from that head, so the test metrics are from rows it never saw (the val
    metrics are optimistic: C was chosen on them).
    """
    import json

    import numpy as np
    import xarray as xr

    from conceptlens._cli_options import read_scores
    from conceptlens._label_check import check_labels
    from conceptlens.exceptions import DataError
    from conceptlens.heads import ConceptBottleneckClassifier
    from conceptlens.heads._cbm import STD_UNIT
    from conceptlens.heads._io import save_head
    from conceptlens.heads._metrics import classification_metrics

    scores = read_scores(scores_path)
    for col in (label, split_column, group_column):
        if col is not None and col not in scores.coords:
            raise DataError(
                f"column {col!r} is not a sample coordinate of {scores_path}; available: "
                f"{sorted(k for k in scores.coords if scores[k].dims == ('sample',))}."
            )
    y = np.asarray(scores[label].values)
    if split_column is not None:
        split = np.asarray(scores[split_column].values).astype(str)
        bad = sorted(str(v) for v in set(split) - set(_SPLITS))
        if bad:
            raise DataError(
                f"split column {split_column!r} has values {bad[:5]}; use train/val/test."
            )
        note = f"split from column {split_column!r}"
    else:
        split, note = _default_split(scores, y, seed)
    train = split == "train"
    if not train.any():
        raise DataError(f"no sample is in the train split ({note}); the head needs some.")
    known = json.loads(scores.attrs.get("bank_classes", "[]"))
    check_labels(
        y,
        known=known,
        counted=y[train],
        accept=accept_labels,
        where=f"column {label!r} of {scores_path}",
    )
    untrained = sorted(set(map(str, y)) - set(map(str, y[train])))
    if untrained:
        raise DataError(
            f"labels {untrained} have no train row, so the head cannot learn them; put some "
            f"of their samples in the train split ({note})."
        )
    val = split == "val"
    model = ConceptBottleneckClassifier(
        C=C,
        l1_ratio=l1_ratio,
        Cs=n_cs,
        max_concepts_per_class=max_concepts_per_class,
        refit=False,
        random_state=seed,
    )
    seen = train
    if C is not None:
        model.fit(scores[train], y[train])
        how = f"fitted on {int(train.sum())} train rows at C = {C:.4g}"
    elif val.any():
        rows = seen = train | val
        model.fit(scores[rows], y[rows], validation_mask=val[rows])
        how = (
            f"fitted on {int(train.sum())} train rows, C selected on {int(val.sum())} val "
            "rows (val metrics are optimistic)"
        )
    else:
        model.fit(scores[train], y[train])
        how = (
            f"fitted on {int(train.sum())} train rows minus a validation part of "
            f"{model.validation_fraction:.0%} that selects C"
        )
    click.echo(f"{note}; the head is {how}.")
    eval_sets = {name: split == name for name in ("val", "test")}
    if not any(rows.any() for rows in eval_sets.values()):
        click.echo("warning: no val or test rows: nothing to evaluate on held-out data.", err=True)
    lines = []
    results = []
    for name, rows in eval_sets.items():
        if not rows.any():
            continue
        proba = np.asarray(model.predict_proba(scores[rows]))
        groups = scores[group_column].values[rows] if group_column else None
        m = classification_metrics(
            y[rows], proba, classes=model.classes_, groups=groups, n_boot=n_boot, seed=seed
        )
        results.append(m.expand_dims(split=[name]))
        for g in m.group.values:
            n = int(m.n_samples.sel(group=g))  # a 1-sample group has a [0, 0] or [1, 1] CI
            for metric in m.metric.values:
                e = m.sel(group=g, metric=metric)
                lines.append(
                    printable(
                        f"{name:6s} {g!s:12s} {n:5d}  {metric:18s} {float(e.estimate):.3f} "
                        f"[{float(e.ci_low):.3f}, {float(e.ci_high):.3f}]"
                    )
                )
    metrics = None
    if results:
        metrics = xr.concat(results, dim="split")
        metrics.attrs.update(split=note, fitted_on="train", selected_on="val")
    # one atomic folder: head + metrics together, never a new head next to old metrics
    out_dir = save_head(
        model,
        out,
        trained_on=scores,
        fit_samples=scores[seen],
        extra_files={"metrics.nc": metrics.to_netcdf} if metrics is not None else None,
    )
    nnz = (model.coef_ != 0).sum("concept")
    click.echo(
        f"selected C = {getattr(model, 'C_', C):.4g}; concepts per class: "
        + ", ".join(f"{c}={int(v)}" for c, v in zip(nnz["class"].values, nnz.values, strict=True))
    )
    if lines:
        click.echo("split  group            n  metric             value [95% CI]")
        for line in lines:
            click.echo(line)
    click.echo(f"top concepts per class ({STD_UNIT}):")
    for cls in model.coef_["class"].values:
        click.echo(f"  {cls}: {_describe_class(model, cls)}")
    echo_info(f"saved model to {out_dir}")


def _describe_class(model, cls, k=5):
    """The class's largest positive weights, or, when it has none, its largest negative ones."""
    import numpy as np

    top = model.top_concepts(cls, k=k)
    if top.size:
        return ", ".join(
            f"{c} ({w:+.2f})" for c, w in zip(top.concept.values, top.values, strict=True)
        )
    row = model.coef_std_.sel({"class": str(cls)})
    row = row[row < 0]
    if not row.size:
        return "(no non-zero weight: predicted from the intercept alone)"
    order = np.argsort(row.values, kind="stable")[:k]
    against = ", ".join(
        f"{c} ({w:+.2f})"
        for c, w in zip(row.concept.values[order], row.values[order], strict=True)
    )
    return f"(no positive weight; predicted when these are low: {against})"


@click.command(name="predict")
@model_option
@scores_option("netCDF file holding a `concept_score` DataArray scored with the same bank.")
@click.option(
    "--out",
    "out",
    required=True,
    type=UserPath(dir_okay=False),
    help="Output file: .csv (one row per sample) or .nc (netCDF).",
)
@allow_mismatch_option
def predict(model_dir, scores_path, out, allow_score_mismatch):
    """Apply a saved head to concept scores; write labelled class probabilities.

    The output holds, per sample, the predicted class and one probability per class
    (CSV columns proba_<class>; netCDF variable proba with dims (sample, class)),
    with every sample coordinate of the scores (label, site, split...) alongside.
    """
    from pathlib import Path

    import numpy as np
    import xarray as xr

    from conceptlens._io import atomic_path, atomic_write_text
    from conceptlens.exceptions import DataError
    from conceptlens.heads import ConceptBottleneckClassifier

    out_path = Path(out)
    suffix = out_path.suffix.lower()
    if suffix not in (".csv", ".nc"):
        raise click.BadParameter(f"{out}: use a .csv or .nc suffix.", param_hint="--out")
    model, scores = read_head_and_scores(model_dir, scores_path, allow_score_mismatch)
    if not isinstance(model, ConceptBottleneckClassifier):
        raise DataError(
            f"{model_dir} holds a {type(model).__name__}, which has no concept names; "
            "predict needs a head fitted on concept scores (`conceptlens fit`)."
        )
    proba = model.predict_proba(scores)
    if model.head_.multilabel_:
        predicted = (proba.values > 0.5).astype(int)
        pred = xr.DataArray(predicted, dims=proba.dims, coords=proba.coords, name="predicted")
    else:
        pred = xr.DataArray(
            np.asarray(proba["class"].values)[proba.values.argmax(axis=1)],
            dims=("sample",),
            coords={k: v for k, v in proba.coords.items() if v.dims == ("sample",)},
            name="predicted",
        )
    if suffix == ".nc":
        ds = xr.Dataset({"proba": proba, "predicted": pred})
        ds.attrs.update(model=str(Path(model_dir).resolve()), scores=str(scores_path))
        with atomic_path(out_path) as tmp:
            ds.to_netcdf(tmp)
    else:
        frame = proba.to_pandas()
        frame.columns = [f"proba_{c}" for c in frame.columns]
        if pred.ndim == 1:
            frame.insert(0, "predicted", pred.values)
        for name, coord in reversed(list(proba.coords.items())):
            if coord.dims == ("sample",) and name != "sample":
                frame.insert(0, name, coord.values)
        frame.index.name = "sample"
        atomic_write_text(out_path, frame.to_csv())
    echo_info(
        f"wrote {out_path}: {proba.sizes['sample']} samples x {proba.sizes['class']} "
        f"class probabilities ({', '.join(map(str, proba['class'].values))})"
    )
