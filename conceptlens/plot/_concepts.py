"""Concept-level plots: score distributions, head weights and contribution waterfalls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from conceptlens.exceptions import DataError, UnknownNameError
from conceptlens.plot._common import DIVERGING, check_dims, get_ax, literal_text, pick

__all__ = ["concept_distributions", "contribution_waterfall", "head_weights"]


@literal_text
def concept_distributions(
    scores: xr.DataArray,
    concepts: Sequence[str] | None = None,
    *,
    by: str = "label",
    ax: Any = None,
) -> Any:
    """Box plots of concept scores, one box per value of ``by`` (class, site...) per concept.

    Parameters
    ----------
    scores : xr.DataArray (sample, concept)
        Concept scores with ``by`` as a sample coordinate (``score_concepts`` output).
    concepts : sequence of str, optional
        Concepts to show, in this order (at most 8 is readable); all by default.
    by : str, default="label"
        Sample coordinate to split the samples by (``"label"``, ``"site"``, ...).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        x tick labels are the concepts; the legend names the values of ``by``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.plot import concept_distributions
    >>> s = xr.DataArray(np.arange(8.0).reshape(4, 2), dims=("sample", "concept"),
    ...                  coords={"concept": ["ink", "veil"], "label": ("sample", list("aabb"))})
    >>> ax = concept_distributions(s)
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['ink', 'veil']
    """
    check_dims(scores, ("sample", "concept"), "concept_distributions",
               "pass score_concepts output.")  # fmt: skip
    if by not in scores.coords:
        have = [c for c in scores.coords if scores[c].dims == ("sample",)]
        raise UnknownNameError(
            f"{by!r} is not a sample coordinate of the scores; available: {have}"
        )
    names = [str(c) for c in scores["concept"].values]
    concepts = names if concepts is None else [str(c) for c in concepts]
    for c in concepts:
        pick(names, c, "concept")
    groups = np.asarray(scores[by].values).astype(str)
    levels = list(dict.fromkeys(sorted(groups)))
    ax = get_ax(ax, figsize=(max(4.0, 1.1 * len(concepts) * max(1, len(levels)) / 2), 3.6))
    cmap = _palette(len(levels))
    width = 0.8 / len(levels)
    for g, level in enumerate(levels):
        sub = scores.values[groups == level]
        data = [sub[:, names.index(c)] for c in concepts]
        pos = np.arange(len(concepts)) - 0.4 + width * (g + 0.5)
        bp = ax.boxplot(data, positions=pos, widths=width * 0.85, patch_artist=True,
                        showfliers=False, manage_ticks=False)  # fmt: skip
        for box in bp["boxes"]:
            box.set(facecolor=cmap[g], alpha=0.8)
        for med in bp["medians"]:
            med.set(color="black", gid="median")
        bp["boxes"][0].set_label(level)
    ax.set_xticks(np.arange(len(concepts)), concepts, rotation=30, ha="right")
    ax.set_ylabel(str(scores.name or "concept score"))
    ax.set_title(f"concept scores by {by}")
    ax.legend(title=by, fontsize="small")
    return ax


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


@literal_text
def head_weights(
    model: Any,
    *,
    k: int | None = 12,
    ax: Any = None,
) -> Any:
    """Heat map of a head's weights per training SD of each score: concepts x classes.

    Parameters
    ----------
    model : fitted concept head or xr.DataArray (class, concept)
        A head (weights from :func:`conceptlens.explain.standardized_weights`) or those
        weights themselves.
    k : int or None, default=12
        Show the ``k`` concepts with the largest mean ``|weight|`` (all when None);
        concepts with zero weight in every class are left out.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        y tick labels are the concepts, x tick labels the classes; each cell shows its
        signed weight.

    Examples
    --------
    >>> import xarray as xr
    >>> from conceptlens.plot import head_weights
    >>> w = xr.DataArray([[0.5, -1.0]], dims=("class", "concept"),
    ...                  coords={"class": ["mel"], "concept": ["veil", "ink"]})
    >>> ax = head_weights(w)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['ink', 'veil']
    """
    if isinstance(model, xr.DataArray):
        w = model
    else:
        from conceptlens.explain import standardized_weights

        w = standardized_weights(model)
    check_dims(w, ("class", "concept"), "head_weights",
               "pass a fitted head or standardized_weights(head).")  # fmt: skip
    w = w.transpose("concept", "class")
    imp = np.abs(w.values).mean(axis=1)
    order = [j for j in np.argsort(-imp, kind="stable") if imp[j] > 0]
    if k is not None:
        order = order[: int(k)]
    if not order:
        raise DataError("every weight of the head is zero: nothing to draw.")
    vals = w.values[order]
    concepts = [str(c) for c in w["concept"].values[order]]
    classes = [str(c) for c in w["class"].values]
    ax = get_ax(ax, figsize=(1.2 * len(classes) + 3.0, 0.32 * len(concepts) + 1.5))
    lim = float(np.abs(vals).max())
    im = ax.imshow(vals, cmap=DIVERGING, vmin=-lim, vmax=lim, aspect="auto")
    for (i, j), v in np.ndenumerate(vals):
        ax.text(j, i, f"{v:+.2f}" if v else "0", ha="center", va="center", fontsize=7,
                color="white" if abs(v) > 0.6 * lim else "black")  # fmt: skip
    ax.set_xticks(np.arange(len(classes)), classes, rotation=20, ha="right")
    ax.set_yticks(np.arange(len(concepts)), concepts)
    ax.set_title("head weights (logit per SD of the score)")
    ax.figure.colorbar(im, ax=ax, label="weight per SD")
    return ax


@literal_text
def contribution_waterfall(
    contributions: xr.DataArray,
    sample: Any = 0,
    cls: str | None = None,
    *,
    max_concepts: int = 10,
    ax: Any = None,
) -> Any:
    """Waterfall of one sample's concept contributions to one class logit.

    The bars start at the base value (the logit at the training mean of the scores), add
    each concept's contribution, largest first (the rest in one bar), and end at the
    logit; the concepts' scores are in the tick labels.

    Parameters
    ----------
    contributions : xr.DataArray (sample, class, concept)
        :func:`conceptlens.explain.contributions` output.
    sample : int or str, default=0
        Position, or a sample id (a ``sample`` coordinate value).
    cls : str, optional
        The class; default the one with the largest logit for this sample.
    max_concepts : int, default=10
        Concepts drawn one by one; the others are summed.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.plot import contribution_waterfall
    >>> c = xr.DataArray(np.array([[[0.5, -0.2]]]), dims=("sample", "class", "concept"),
    ...                  coords={"class": ["mel"], "concept": ["veil", "ink"],
    ...                          "base_value": ("class", [0.1])})
    >>> ax = contribution_waterfall(c, 0)
    >>> ax.get_title()
    'sample 0: mel logit 0.40 (base 0.10)'
    """
    check_dims(contributions, ("sample", "class", "concept"), "contribution_waterfall",
               "pass conceptlens.explain.contributions output.")  # fmt: skip
    if "base_value" not in contributions.coords:
        raise DataError("contributions need the base_value coordinate "
                        "(conceptlens.explain.contributions output).")  # fmt: skip
    if isinstance(sample, (int, np.integer)):
        one = contributions.isel(sample=int(sample))
        label = str(one["sample"].values) if "sample" in one.coords else str(sample)
    else:
        pick(contributions["sample"].values, sample, "sample")
        one = contributions.sel(sample=sample)
        label = str(sample)
    logits = one.sum("concept") + one["base_value"]
    if cls is None:
        cls = str(one["class"].values[int(np.argmax(logits.values))])
    pick(one["class"].values, cls, "class")
    row = one.sel({"class": cls})
    base = float(row["base_value"])
    vals = np.asarray(row.values, float)
    names = [str(c) for c in row["concept"].values]
    score = row["score"].values if "score" in row.coords else None
    order = [j for j in np.argsort(-np.abs(vals), kind="stable") if vals[j] != 0]
    shown, rest = order[:max_concepts], order[max_concepts:]
    steps = [(f"{names[j]} = {score[j]:.2f}" if score is not None else names[j], vals[j])
             for j in shown]  # fmt: skip
    if rest:
        steps.append((f"{len(rest)} other concepts", float(vals[rest].sum())))
    ax = get_ax(ax, figsize=(6.0, 0.35 * len(steps) + 1.8))
    start = base
    for i, (_name, v) in enumerate(steps):
        ax.barh(i, v, left=start, color="#c0392b" if v > 0 else "#2471a3", height=0.7)
        ax.text(start + v, i, f" {v:+.2f}" if v > 0 else f"{v:+.2f} ",
                ha="left" if v > 0 else "right", va="center", fontsize=7)  # fmt: skip
        start += v
    logit = start
    # bars pin their base as a sticky edge, so set the limits with room for the labels
    ends = np.cumsum([base] + [v for _, v in steps])
    lo, hi = float(min(ends.min(), 0.0)), float(max(ends.max(), 0.0))
    pad = 0.15 * (hi - lo or 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    ax.axvline(base, color="grey", lw=0.8, ls=":")
    ax.axvline(logit, color="black", lw=0.8)
    ax.set_yticks(np.arange(len(steps)), [s[0] for s in steps])
    ax.invert_yaxis()
    ax.set_xlabel(f"{cls} logit")
    ax.set_title(f"sample {label}: {cls} logit {logit:.2f} (base {base:.2f})")
    return ax
