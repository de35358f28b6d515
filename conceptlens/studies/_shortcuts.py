"""``find_shortcuts``: concepts the model relies on whose link to the label shifts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.studies._concepts import concept_audit

__all__ = ["ARTIFACT_GROUPS", "find_shortcuts"]

ARTIFACT_GROUPS = ("artifact", "device", "acquisition", "annotation", "text")


def find_shortcuts(
    model: Any,
    scores: xr.DataArray,
    *,
    labels: Any = "label",
    by: str = "site",
    background: Any = None,
    alpha: float = 0.01,
    min_reliance: float = 0.1,
    artifact_groups: Sequence[str] = ARTIFACT_GROUPS,
) -> pd.DataFrame:
    """Rank concepts by reliance x shift: the model's shortcut suspects, strongest first.

    For every (concept, class): the **reliance** is the mean absolute contribution of the
    concept to the class logit (weight x (score - baseline), from
    :func:`conceptlens.explain.contributions`); the **shift** is the larger of how much
    the concept's link to the class (AUROC of the score for the class against the rest)
    and its prevalence (``2 |AUROC - 0.5|`` of the score between two values of ``by``)
    change between the values of ``by`` (:func:`concept_audit`).  The **suspicion** is
    reliance x shift.  A row is flagged ``suspect`` when the shift is significant
    (Bonferroni over all rows at ``alpha``) and the reliance is at least
    ``min_reliance`` of the class's largest.

    Parameters
    ----------
    model : fitted ConceptBottleneckClassifier or SparseLinearHead
    scores : xr.DataArray (sample, concept)
        Scores of cases from every value of ``by`` (e.g. all sites), with metadata
        coordinates.
    labels : str or array, default="label"
    by : str, default="site"
        The metadata column whose values are compared (site, device, skin tone...).
    background : optional
        Passed to ``contributions`` (heads fitted without standardisation).
    alpha : float, default=0.01
        Family-wise level of the shift test.
    min_reliance : float, default=0.1
        Fraction of the class's largest reliance below which a row is not flagged.
    artifact_groups : sequence of str
        Concept groups (``concept_group`` coordinate) flagged ``artifact``.

    Returns
    -------
    pandas.DataFrame
        One row per (concept, class), sorted by ``suspicion`` (descending), with columns
        ``concept``, ``class``, ``concept_group``, ``artifact``, ``reliance``,
        ``association_shift``, ``association_shift_p``, ``prevalence_shift``,
        ``prevalence_shift_p``, ``shift``, ``suspicion``, ``suspect`` and
        ``association[<value>]`` per value of ``by``.  ``attrs`` holds ``by`` and the
        Bonferroni threshold.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.heads import ConceptBottleneckClassifier
    >>> from conceptlens.studies import find_shortcuts
    >>> rng = np.random.default_rng(0)
    >>> n = 600; y = rng.integers(0, 2, n); site = np.repeat(["a", "b"], n // 2)
    >>> ink = np.where(site == "a", y, rng.integers(0, 2, n))
    >>> lesion = (rng.random(n) < np.where(y == 1, .8, .2)).astype(float)
    >>> x = np.column_stack([lesion, ink]) + rng.normal(0, .3, (n, 2))
    >>> s = xr.DataArray(x, dims=("sample", "concept"), coords={
    ...     "concept": ["veil", "ink"], "label": ("sample", y), "site": ("sample", site)})
    >>> cbm = ConceptBottleneckClassifier(C=1.0).fit(s[site == "a"], y[site == "a"])
    >>> find_shortcuts(cbm, s).iloc[0]["concept"]
    'ink'
    """
    from conceptlens.explain import contributions

    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}.")
    if not isinstance(scores, xr.DataArray):
        raise DataError("find_shortcuts needs labelled concept scores (an xr.DataArray).")
    contrib = contributions(model, scores, background=background)
    reliance = abs(contrib).mean("sample")  # (class, concept)
    ca = concept_audit(scores, labels=labels, by=by)
    classes = [str(c) for c in reliance["class"].values]
    ca_classes = [str(c) for c in ca["class"].values]
    values = [str(v) for v in ca[by].values if str(v) != "all"]
    if len(values) < 2:  # no shift can be measured: every row would read "not suspect"
        raise DataError(
            f"find_shortcuts compares the values of {by!r}, but the scores hold only "
            f"{values}; pass the scores of cases from at least two values of {by!r} (all "
            "sites, not only the training one), or choose another `by` column."
        )
    groups = (
        {str(c): str(g) for c, g in zip(ca.concept.values, ca.concept_group.values, strict=True)}
        if "concept_group" in ca.coords
        else {}
    )
    rows = []
    for cls in classes:
        rel = reliance.sel({"class": cls})
        top = float(rel.max()) if rel.size else 0.0
        for concept in [str(c) for c in rel["concept"].values]:
            r = float(rel.sel(concept=concept))
            row: dict[str, Any] = {
                "concept": concept,
                "class": cls,
                "concept_group": groups.get(concept, ""),
                "reliance": r,
                "relative_reliance": r / top if top > 0 else 0.0,
            }
            if cls in ca_classes and concept in ca.concept.values:
                sel = {"concept": concept, "class": cls}
                row["association_shift"] = float(ca.association_shift.sel(sel))
                row["association_shift_p"] = float(ca.association_shift_p.sel(sel))
                for v in values:
                    row[f"association[{v}]"] = float(ca.label_association.sel({**sel, by: v}))
            else:
                row["association_shift"] = row["association_shift_p"] = np.nan
            row["prevalence_shift"] = float(ca.prevalence_shift.sel(concept=concept))
            row["prevalence_shift_p"] = float(ca.prevalence_shift_p.sel(concept=concept))
            rows.append(row)
    df = pd.DataFrame(rows)
    df["artifact"] = df["concept_group"].isin(list(artifact_groups))
    df["shift"] = np.fmax(df["association_shift"], df["prevalence_shift"])
    df["suspicion"] = (df["reliance"] * df["shift"]).fillna(0.0)
    threshold = alpha / max(2 * len(df), 1)
    significant = (df["association_shift_p"] < threshold) | (df["prevalence_shift_p"] < threshold)
    df["suspect"] = significant & (df["relative_reliance"] >= min_reliance) & (df["reliance"] > 0)
    front = ["concept", "class", "concept_group", "artifact", "suspicion", "suspect",
             "reliance", "relative_reliance", "shift", "association_shift",
             "association_shift_p", "prevalence_shift", "prevalence_shift_p"]  # fmt: skip
    df = df[front + [c for c in df.columns if c not in front]]
    df = df.sort_values(["suspicion", "reliance"], ascending=False, kind="mergesort")
    df = df.reset_index(drop=True)
    df.attrs.update(by=by, alpha=alpha, p_threshold=threshold)
    return df
