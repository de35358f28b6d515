"""``concept_audit``: per concept and site, detection, prevalence, label link and shifts."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import xarray as xr

from conceptlens._samples import sample_values
from conceptlens.exceptions import DataError
from conceptlens.studies._audit import metadata_column, metadata_table, provenance
from conceptlens.studies._delong import _components

__all__ = ["auroc_se", "concept_audit"]


def auroc_se(score: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """AUROC and its DeLong standard error; ``(nan, nan)`` with fewer than 2 of either."""
    positive = np.asarray(positive, bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        return math.nan, math.nan
    auc, v10, v01 = _components(np.asarray(score, float)[None, :], positive)
    var = float(np.var(v10[0], ddof=1) / m + np.var(v01[0], ddof=1) / n)
    return float(auc[0]), math.sqrt(max(var, 0.0))


def _max_pairwise(est: np.ndarray, se: np.ndarray) -> tuple[float, float]:
    """Largest difference between any two entries and the p-value of the largest z."""
    ok = np.flatnonzero(~np.isnan(est) & ~np.isnan(se))
    if len(ok) < 2:
        return math.nan, math.nan
    best_d, best_z = 0.0, 0.0
    for i, j in itertools.combinations(ok, 2):
        d = abs(est[i] - est[j])
        s = math.sqrt(se[i] ** 2 + se[j] ** 2)
        z = d / s if s > 0 else (math.inf if d > 0 else 0.0)
        best_d = max(best_d, d)
        best_z = max(best_z, z)
    return best_d, math.erfc(best_z / math.sqrt(2.0))


def concept_audit(
    scores: xr.DataArray,
    *,
    labels: Any = "label",
    by: str = "site",
    annotations: xr.DataArray | None = None,
) -> xr.Dataset:
    """Per concept: detection AUROC, prevalence and link to the label per site, and shifts.

    Parameters
    ----------
    scores : xr.DataArray (sample, concept)
        Concept scores with metadata as sample coordinates.
    labels : str or array (n_samples,), default="label"
        Label column or values.
    by : str, default="site"
        Metadata column whose values are compared (site, device, any group).
    annotations : xr.DataArray (sample, concept), optional
        Ground-truth 0/1 concepts; default: the sample coordinates named like a concept
        (SynthDerm and Derm7pt-style manifests carry them).  Concepts without an
        annotation get nan detection AUROC and prevalence.

    Returns
    -------
    xr.Dataset
        Dims ``concept``, ``by`` (the values of the ``by`` column, named by it, plus
        ``"all"``) and ``class``:

        * ``detection_auroc`` (concept, by): AUROC of the score against the annotation;
        * ``prevalence`` (concept, by): fraction annotated present;
        * ``mean_score`` (concept, by), in pooled standard deviations from the pooled mean;
        * ``label_association`` (concept, by, class) and ``label_association_se``: AUROC
          of the score for the class against the rest (0.5: no link);
        * ``association_shift`` (concept, class): largest difference of
          ``label_association`` between two values of ``by``, and
          ``association_shift_p``, the p-value of the largest z of those differences
          (independent DeLong standard errors);
        * ``prevalence_shift`` (concept) and ``prevalence_shift_p``: the same for the
          score's distribution, measured as ``2 |AUROC - 0.5|`` of the score separating
          two values of ``by``;
        * ``annotated_prevalence_shift`` (concept): largest difference of ``prevalence``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.studies import concept_audit
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400); site = np.repeat(["a", "b"], 200)
    >>> ink = np.where(site == "a", y, rng.integers(0, 2, 400))  # linked to y at site a
    >>> s = xr.DataArray(np.column_stack([ink + rng.normal(0, .3, 400)]),
    ...     dims=("sample", "concept"), coords={"concept": ["ink"],
    ...     "label": ("sample", y), "site": ("sample", site), "ink": ("sample", ink)})
    >>> ca = concept_audit(s)
    >>> float(ca.association_shift.sel(concept="ink", **{"class": "1"})) > 0.3
    True
    """
    if not isinstance(scores, xr.DataArray) or set(scores.dims) != {"sample", "concept"}:
        raise DataError(
            "concept_audit needs concept scores: an xr.DataArray with dims "
            "('sample', 'concept') and metadata as sample coordinates."
        )
    scores = scores.transpose("sample", "concept")
    meta = metadata_table(scores)
    y = (
        metadata_column(meta, labels, "label column")
        if isinstance(labels, str)
        else np.asarray(sample_values(scores, labels))
    ).astype(str)
    if y.shape != (scores.sizes["sample"],):
        raise DataError(f"labels have shape {y.shape}, expected ({scores.sizes['sample']},).")
    where = metadata_column(meta, by, "column").astype(str)
    values = sorted(set(where.tolist()))
    sites = [*values, "all"]
    classes = sorted(set(y.tolist()))
    concepts = [str(c) for c in scores["concept"].values]
    x = np.asarray(scores.values, dtype=float)
    if annotations is None:
        have = [c for c in concepts if c in scores.coords and scores[c].dims == ("sample",)]
        truth = {c: np.asarray(scores[c].values, dtype=float) for c in have}
    else:
        ann = sample_values(scores, annotations, name="annotations")
        ann = ann.transpose("sample", "concept")
        if ann.sizes["sample"] != scores.sizes["sample"]:
            raise DataError(
                f"annotations have {ann.sizes['sample']} samples, the scores "
                f"{scores.sizes['sample']}; annotate the same samples."
            )
        truth = {
            str(c): np.asarray(ann.sel(concept=c).values, float)
            for c in ann["concept"].values
            if str(c) in concepts
        }
    nc, nsite, nk = len(concepts), len(sites), len(classes)
    det = np.full((nc, nsite), np.nan)
    prev = np.full((nc, nsite), np.nan)
    mean = np.full((nc, nsite), np.nan)
    assoc = np.full((nc, nsite, nk), np.nan)
    assoc_se = np.full((nc, nsite, nk), np.nan)
    mu, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0
    masks = [where == v for v in values] + [np.ones(len(where), bool)]
    for j, c in enumerate(concepts):
        col = x[:, j]
        t = truth.get(c)
        for si, rows in enumerate(masks):
            mean[j, si] = (col[rows].mean() - mu[j]) / sd[j] if rows.any() else np.nan
            if t is not None:
                ok = rows & ~np.isnan(t)
                if ok.any():
                    prev[j, si] = t[ok].mean()
                    det[j, si] = auroc_se(col[ok], t[ok] > 0.5)[0]
            for ki, cls in enumerate(classes):
                assoc[j, si, ki], assoc_se[j, si, ki] = auroc_se(col[rows], y[rows] == cls)
    ashift = np.full((nc, nk), np.nan)
    ashift_p = np.full((nc, nk), np.nan)
    pshift = np.full(nc, np.nan)
    pshift_p = np.full(nc, np.nan)
    ann_shift = np.full(nc, np.nan)
    for j in range(nc):
        for ki in range(nk):
            ashift[j, ki], ashift_p[j, ki] = _max_pairwise(assoc[j, :-1, ki], assoc_se[j, :-1, ki])
        best, best_z = 0.0, 0.0
        for a, b in itertools.combinations(range(len(values)), 2):
            ok = masks[a] | masks[b]
            auc, se = auroc_se(x[ok, j], masks[a][ok])
            if np.isnan(auc):
                continue
            best = max(best, 2 * abs(auc - 0.5))
            best_z = max(best_z, abs(auc - 0.5) / se if se > 0 else 0.0)
        if len(values) >= 2:
            pshift[j], pshift_p[j] = best, math.erfc(best_z / math.sqrt(2.0))
        p = prev[j, :-1]
        if np.isfinite(p).sum() >= 2:
            ann_shift[j] = np.nanmax(p) - np.nanmin(p)
    coords: dict[str, Any] = {"concept": concepts, by: sites, "class": classes}
    if "concept_group" in scores.coords:
        coords["concept_group"] = ("concept", [str(g) for g in scores["concept_group"].values])
    return xr.Dataset(
        {
            "detection_auroc": (("concept", by), det),
            "prevalence": (("concept", by), prev),
            "mean_score": (("concept", by), mean),
            "label_association": (("concept", by, "class"), assoc),
            "label_association_se": (("concept", by, "class"), assoc_se),
            "association_shift": (("concept", "class"), ashift),
            "association_shift_p": (("concept", "class"), ashift_p),
            "prevalence_shift": (("concept",), pshift),
            "prevalence_shift_p": (("concept",), pshift_p),
            "annotated_prevalence_shift": (("concept",), ann_shift),
            "n_cases": ((by,), np.array([int(m.sum()) for m in masks])),
        },
        coords=coords,
        attrs={"by": by, "annotated": ",".join(sorted(truth)), **provenance(scores)},
    )
