"""Study plots: audit tables and forest plots, intervention curves, masking-study grids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from conceptlens.exceptions import DataError
from conceptlens.plot._common import SEQUENTIAL, check_dims, fmt_ci, get_ax, literal_text, pick

__all__ = ["intervention_curves", "masking_grid", "metric_forest", "metric_table"]

METRIC_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc.",
    "auroc": "macro AUROC",
    "ece": "ECE",
}


def _audit_metrics(audit: Any) -> xr.DataArray:
    if not isinstance(audit, xr.Dataset) or "metrics" not in audit:
        raise DataError("pass the xr.Dataset of conceptlens.studies.audit (it has `metrics`).")
    m = audit["metrics"]
    check_dims(m, ("model", "split", "group", "metric", "stat"), "the audit's metrics",
               "pass the Dataset of conceptlens.studies.audit.")  # fmt: skip
    return m


@literal_text
def metric_table(
    audit: xr.Dataset,
    *,
    group: str = "all",
    metrics: Sequence[str] = ("accuracy", "balanced_accuracy", "auroc", "ece"),
    ax: Any = None,
) -> Any:
    """A table of estimates with confidence intervals: one row per model and split.

    Parameters
    ----------
    audit : xr.Dataset
        :func:`conceptlens.studies.audit` output.
    group : str, default="all"
        The group row to show (``"all"``, ``"skin_tone=3"``, ``"worst:skin_tone"``...).
    metrics : sequence of str
        Columns, from the audit's ``metric`` coordinate.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        With one ``matplotlib.table.Table`` (``ax.tables[0]``); cells read
        ``estimate [ci_low, ci_high]``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.plot import metric_table
    >>> m = xr.DataArray(np.array([0.9, 0.8, 0.95]).reshape(1, 1, 1, 1, 3),
    ...     dims=("model", "split", "group", "metric", "stat"),
    ...     coords={"model": ["cbm"], "split": ["test"], "group": ["all"],
    ...             "metric": ["accuracy"], "stat": ["estimate", "ci_low", "ci_high"]})
    >>> ax = metric_table(xr.Dataset({"metrics": m}), metrics=["accuracy"])
    >>> ax.tables[0][1, 2].get_text().get_text()
    '0.900 [0.800, 0.950]'
    """
    m = _audit_metrics(audit)
    pick(m["group"].values, group, "group")
    for name in metrics:
        pick(m["metric"].values, name, "metric")
    m = m.sel(group=group)
    rows = []
    for model in m["model"].values:
        for split in m["split"].values:
            cells = [str(model), str(split)]
            for name in metrics:
                est, lo, hi = (float(m.sel(model=model, split=split, metric=name, stat=s))
                               for s in ("estimate", "ci_low", "ci_high"))  # fmt: skip
                cells.append(fmt_ci(est, lo, hi))
            rows.append(cells)
    header = ["model", "split"] + [METRIC_LABELS.get(n, n) for n in metrics]
    ax = get_ax(ax, figsize=(2.0 + 1.6 * len(metrics), 0.3 * len(rows) + 0.8))
    ax.set_axis_off()
    table = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(len(header))))
    for j in range(len(header)):
        table[0, j].set_text_props(fontweight="bold")
    ci = audit.attrs.get("ci")
    ax.set_title(f"{group}: estimate [{round(100 * ci)}% CI]" if ci else f"{group}: estimate")
    return ax


@literal_text
def metric_forest(
    audit: xr.Dataset,
    metric: str = "auroc",
    *,
    group: str = "all",
    ax: Any = None,
) -> Any:
    """Forest plot of one metric with its confidence interval across models and splits.

    Parameters
    ----------
    audit : xr.Dataset
        :func:`conceptlens.studies.audit` output.
    metric : str, default="auroc"
        One of the audit's metrics.
    group : str, default="all"
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        y tick labels ``model | split``, one point and interval per row, models in colour.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.plot import metric_forest
    >>> m = xr.DataArray(np.array([0.9, 0.8, 0.95]).reshape(1, 1, 1, 1, 3),
    ...     dims=("model", "split", "group", "metric", "stat"),
    ...     coords={"model": ["cbm"], "split": ["test"], "group": ["all"],
    ...             "metric": ["auroc"], "stat": ["estimate", "ci_low", "ci_high"]})
    >>> ax = metric_forest(xr.Dataset({"metrics": m}))
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['cbm | test']
    """
    from matplotlib import colormaps

    m = _audit_metrics(audit)
    pick(m["metric"].values, metric, "metric")
    pick(m["group"].values, group, "group")
    m = m.sel(group=group, metric=metric)
    labels, y = [], 0
    models = [str(v) for v in m["model"].values]
    splits = [str(v) for v in m["split"].values]
    ax = get_ax(ax, figsize=(5.5, 0.32 * len(models) * len(splits) + 1.3))
    cmap = colormaps["tab10"]
    for i, model in enumerate(models):
        for split in splits:
            est, lo, hi = (float(m.sel(model=model, split=split, stat=s))
                           for s in ("estimate", "ci_low", "ci_high"))  # fmt: skip
            if np.isfinite(est):
                err = [[max(est - lo, 0.0)], [max(hi - est, 0.0)]] if np.isfinite(lo) else None
                ax.errorbar(est, y, xerr=err, fmt="o", color=cmap(i % 10), capsize=3,
                            label=model if split == splits[0] else None)  # fmt: skip
            labels.append(f"{model} | {split}")
            y += 1
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(METRIC_LABELS.get(metric, metric))
    ci = audit.attrs.get("ci")
    suffix = f" ({round(100 * ci)}% CI)" if ci else ""
    ax.set_title(f"{METRIC_LABELS.get(metric, metric)}, {group}{suffix}")
    ax.grid(axis="x", alpha=0.3)
    return ax


@literal_text
def intervention_curves(
    curves: xr.Dataset | Mapping[str, xr.Dataset],
    *,
    ax: Any = None,
) -> Any:
    """Accuracy as concepts are corrected to ground truth, ranked order against random.

    Parameters
    ----------
    curves : xr.Dataset or mapping name -> xr.Dataset
        :func:`conceptlens.masking.intervention_curve` output (``accuracy`` (order, k),
        ``accuracy_random_sd``, ``auc``); several (e.g. per split) share the Axes.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        One solid line per ranked order, a dashed one with a +-1 SD band for random
        order; legend entries carry the AUC.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.plot import intervention_curves
    >>> ds = xr.Dataset({"accuracy": (("order", "k"), [[0.7, 0.8], [0.7, 0.75]]),
    ...                  "accuracy_random_sd": ("k", [0.0, 0.02]), "auc": ("order", [0.75, 0.72])},
    ...                 coords={"order": ["uncertainty", "random"], "k": [0, 1]})
    >>> ax = intervention_curves(ds)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['uncertainty (AUC 0.750)', 'random (AUC 0.720)']
    """
    from matplotlib import colormaps

    items = {"": curves} if isinstance(curves, xr.Dataset) else dict(curves)
    ax = get_ax(ax, figsize=(5.5, 3.8))
    cmap = colormaps["tab10"]
    for i, (name, ds) in enumerate(items.items()):
        if not isinstance(ds, xr.Dataset) or "accuracy" not in ds:
            raise DataError("pass conceptlens.masking.intervention_curve output "
                            "(an xr.Dataset with `accuracy` (order, k)).")  # fmt: skip
        check_dims(ds["accuracy"], ("order", "k"), "intervention_curves",
                   "pass conceptlens.masking.intervention_curve output.")  # fmt: skip
        k = ds["k"].values
        prefix = f"{name}: " if name else ""
        for order in ds["order"].values:
            acc = ds["accuracy"].sel(order=order).values
            auc = float(ds["auc"].sel(order=order)) if "auc" in ds else np.nan
            text = f"{prefix}{order}" + (f" (AUC {auc:.3f})" if np.isfinite(auc) else "")
            rand = str(order) == "random"
            ax.plot(k, acc, ls="--" if rand else "-", marker="" if rand else "o", ms=3,
                    color=cmap(i % 10), label=text)  # fmt: skip
            if rand and "accuracy_random_sd" in ds:
                sd = ds["accuracy_random_sd"].values
                ax.fill_between(k, acc - sd, acc + sd, color=cmap(i % 10), alpha=0.15, lw=0)
    ax.set_xlabel("concepts corrected to ground truth (k)")
    ax.set_ylabel("accuracy")
    ax.set_title("test-time concept interventions")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax


@literal_text
def masking_grid(
    grid: xr.Dataset,
    *,
    model: str | None = None,
    dilation: Any = None,
    cls: str | None = None,
    ax: Any = None,
) -> Any:
    """The shortcut-masking study as a heat map: trained on (rows) x evaluated on (columns).

    Parameters
    ----------
    grid : xr.Dataset
        :func:`conceptlens.studies.masking_study` output.
    model : str, optional
        Default the first model of the grid.
    dilation : optional
        Default the first dilation.
    cls : str, optional
        A class (its one-vs-rest AUROC); default the macro AUROC.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        Cells show the estimate and its interval; tick labels are the conditions.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.plot import masking_grid
    >>> v = np.array([[[0.9, 0.85, 0.95], [0.5, 0.4, 0.6]]]).reshape(1, 1, 1, 2, 3)
    >>> g = xr.Dataset({"macro_auroc": (("model", "dilation", "train_condition",
    ...     "eval_condition", "stat"), v)}, coords={"model": ["cbm"], "dilation": [0],
    ...     "train_condition": ["full"], "eval_condition": ["full", "no_roi"],
    ...     "stat": ["estimate", "ci_low", "ci_high"]})
    >>> ax = masking_grid(g)
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['full', 'no_roi']
    """
    var = "macro_auroc" if cls is None else "auroc"
    if not isinstance(grid, xr.Dataset) or var not in grid:
        raise DataError(f"pass conceptlens.studies.masking_study output (it has `{var}`).")
    da = grid[var]
    model = str(grid["model"].values[0]) if model is None else model
    pick(grid["model"].values, model, "model")
    sel: dict[str, Any] = {"model": model}
    if "dilation" in da.dims:
        dilation = grid["dilation"].values[0] if dilation is None else dilation
        pick(grid["dilation"].values, dilation, "dilation")
        sel["dilation"] = dilation
    if cls is not None:
        pick(grid["class"].values, cls, "class")
        sel["class"] = cls
    da = da.sel(sel).transpose("train_condition", "eval_condition", "stat")
    est = da.sel(stat="estimate").values
    rows = [str(v) for v in da["train_condition"].values]
    cols = [str(v) for v in da["eval_condition"].values]
    ax = get_ax(ax, figsize=(1.25 * len(cols) + 2.5, 0.8 * len(rows) + 1.6))
    im = ax.imshow(est, cmap=SEQUENTIAL, vmin=0.0, vmax=1.0)
    for (i, j), v in np.ndenumerate(est):
        lo, hi = (
            float(da.sel(stat="ci_low").values[i, j]),
            float(da.sel(stat="ci_high").values[i, j]),
        )
        text = f"{v:.2f}" + (
            f"\n[{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) and np.isfinite(hi) else ""
        )
        ax.text(j, i, text if np.isfinite(v) else "n/a", ha="center", va="center", fontsize=7,
                color="black" if np.isfinite(v) and v > 0.6 else "white")  # fmt: skip
    ax.set_xticks(np.arange(len(cols)), cols, rotation=20, ha="right")
    ax.set_yticks(np.arange(len(rows)), rows)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")
    what = "macro AUROC" if cls is None else f"{cls} AUROC"
    extra = f", dilation {sel['dilation']}" if "dilation" in sel else ""
    ax.set_title(f"{model}: {what}{extra}")
    ax.figure.colorbar(im, ax=ax, label=what)
    return ax
