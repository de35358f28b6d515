"""The bank quality report as a figure: one bar per concept, coloured by the suggestion."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from conceptlens.exceptions import DataError, UnknownNameError
from conceptlens.plot._common import check_dims, get_ax, literal_text

__all__ = ["bank_quality_bars"]

#: bar colour of each suggestion kind (the first word of ``suggestion``)
SUGGESTION_COLOURS = {"keep": "#4c72b0", "merge": "#dd8452", "reject": "#c44e52"}
_LABELS = {
    "auroc": "detection AUROC against the annotations",
    "margin": "lift over the random-words baseline (score units)",
    "drop_one_loss": "head loss without the concept (nats)",
    "score_redundancy": "highest score correlation with another concept",
    "text_redundancy": "highest text cosine with another concept",
}


@literal_text
def bank_quality_bars(report: xr.Dataset, metric: str = "auroc", *, ax: Any = None) -> Any:
    """Horizontal bars of one per-concept measure of :func:`conceptlens.concepts.bank_quality`.

    Each bar is coloured by the concept's suggestion (keep / merge / reject); a missing
    value (no annotation for that concept) draws no bar and says ``n/a``.

    Parameters
    ----------
    report : xr.Dataset
        ``bank_quality`` output (dim ``concept``, with a ``suggestion`` variable).
    metric : str, default="auroc"
        A per-concept variable of the report: ``auroc``, ``margin``, ``drop_one_loss``,
        ``score_redundancy``, ``text_redundancy``, ...
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        y tick labels are the concepts (first at the top); the legend names the
        suggestion kinds present.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.plot import bank_quality_bars
    >>> rep = xr.Dataset({"auroc": ("concept", [0.95, 0.52]),
    ...                   "suggestion": ("concept", ["keep", "reject: undetectable"])},
    ...                  coords={"concept": ["ruler", "vague_thing"]})
    >>> ax = bank_quality_bars(rep)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['ruler', 'vague_thing']
    """
    check_dims(report, ("concept",), "bank_quality_bars", "pass bank_quality output.")
    if metric not in report.data_vars or report[metric].dims != ("concept",):
        have = [v for v in report.data_vars if report[v].dims == ("concept",)]
        raise UnknownNameError(f"{metric!r} is not a per-concept measure of the report; "
                               f"available: {have}")  # fmt: skip
    values = np.asarray(report[metric].values)
    if values.dtype.kind not in "biuf":
        raise DataError(f"{metric!r} holds {values.dtype} values, not numbers")
    names = [str(c) for c in report["concept"].values]
    kinds = (
        [str(s).split(":")[0].split(" ")[0] for s in report["suggestion"].values]
        if "suggestion" in report
        else ["keep"] * len(names)
    )
    ax = get_ax(ax, figsize=(6.4, max(2.0, 0.28 * len(names) + 1.0)))
    y = np.arange(len(names))
    finite = np.isfinite(values.astype(float))
    colours = [SUGGESTION_COLOURS.get(k, "#8c8c8c") for k in kinds]
    ax.barh(
        y[finite], values[finite], color=[c for c, f in zip(colours, finite, strict=True) if f]
    )
    for yi in y[~finite]:
        ax.text(0, yi, " n/a", va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(_LABELS.get(metric, metric))
    if metric == "auroc":
        ax.axvline(0.5, color="0.5", lw=0.8, ls=":")
    title = report.attrs.get("bank_id")
    ax.set_title(f"bank quality: {title}" if title else "bank quality")
    from matplotlib.patches import Patch

    present = [k for k in SUGGESTION_COLOURS if k in kinds]
    ax.legend(handles=[Patch(color=SUGGESTION_COLOURS[k], label=k) for k in present],
              loc="lower right", fontsize=8)  # fmt: skip
    return ax
