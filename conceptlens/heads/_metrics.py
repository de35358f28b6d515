"""Classification metrics with stratified bootstrap confidence intervals (numba kernel)."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from conceptlens._samples import sample_values
from conceptlens.exceptions import DataError
from conceptlens.heads import _kernels

__all__ = ["METRICS", "classification_metrics"]

METRICS = ("accuracy", "balanced_accuracy", "auroc")

#: Group name of the samples whose group value is NaN, None or empty.
MISSING_GROUP = "<missing>"


def classification_metrics(
    y_true,
    proba,
    *,
    classes=None,
    groups=None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> xr.Dataset:
    """Accuracy, balanced accuracy and macro AUROC, overall, per group and worst group.

    Parameters
    ----------
    y_true : array (n_samples,)
        True labels (values of ``classes``).
    proba : array (n_samples, n_classes), or (n_samples,) for two classes
        Predicted probabilities (or any scores monotone in them) per class, columns in
        the order of ``classes``; the prediction is the arg-max.  A 1-D array is the
        probability of the second class (values in [0, 1]) or its logit.
    classes : sequence, optional
        Class labels in column order; default ``np.unique(y_true)``.
    groups : array (n_samples,), optional
        Group of each sample (site, skin tone, sex...).  Adds one entry per group and
        a ``"worst"`` entry (the minimum over groups, per bootstrap replicate).
    n_boot : int, default=1000
        Bootstrap replicates; 0 gives point estimates only (CI bounds are nan).
    ci : float, default=0.95
        Central interval of the bootstrap distribution (percentile method).
    seed : int, default=0
        Seed of the resampling: the same seed gives the same intervals.

    Returns
    -------
    xr.Dataset
        Variables ``estimate``, ``ci_low``, ``ci_high`` and ``n_samples`` with dims
        ``("group", "metric")``; ``group`` is ``"all"``, then each group, then
        ``"worst"``.  Macro AUROC is one-vs-rest averaged over classes present (for two
        classes, the AUROC of the second class).  Resampling is stratified by true class
        (and group), so every replicate keeps the class and group sizes.

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import classification_metrics
    >>> y = np.array([0, 0, 1, 1]); p = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    >>> ds = classification_metrics(y, p, n_boot=0)
    >>> float(ds.estimate.sel(group="all", metric="accuracy"))
    0.75
    """
    if isinstance(proba, xr.DataArray) and "class" in proba.dims and proba.ndim == 2:
        # labelled probabilities (``predict_proba`` of labelled scores): columns by name,
        # labels and groups indexed by sample name in the order of its samples
        proba = proba.transpose(..., "class")
        names = [str(c) for c in proba["class"].values]
        if classes is not None:
            absent = [str(c) for c in classes if str(c) not in names]
            if absent:
                raise DataError(
                    f"classes {absent} are not columns of proba (its classes are {names})."
                )
            proba = proba.isel({"class": [names.index(str(c)) for c in classes]})
        else:
            classes = np.asarray(proba["class"].values)
        # the class coordinate is text: compare labels as text (0/1 labels, "0"/"1" columns)
        classes = np.asarray([str(c) for c in classes])
        y_true = np.asarray(sample_values(proba, y_true, name="y_true")).astype(str)
        if groups is not None:
            groups = sample_values(proba, groups, name="groups")
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=float)
    classes = np.unique(y_true) if classes is None else np.asarray(classes)
    if proba.ndim == 1:
        if np.all((proba >= 0) & (proba <= 1)):
            proba = np.column_stack([1.0 - proba, proba])
        else:  # logits: threshold at zero
            proba = np.column_stack([-proba, proba])
    if proba.shape != (len(y_true), len(classes)):
        raise DataError(
            f"proba has shape {proba.shape}, expected (n_samples, n_classes) = "
            f"({len(y_true)}, {len(classes)}); pass one column per class in `classes` order."
        )
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    unknown = sorted({str(v) for v in y_true.tolist() if v not in lookup})
    if unknown:
        raise DataError(
            f"labels {unknown[:5]} are not in classes {classes.tolist()}; pass `classes`."
        )
    codes = np.array([lookup[v] for v in y_true.tolist()], dtype=np.int64)
    pred = proba.argmax(axis=1).astype(np.int64)
    if groups is None:
        gcodes = np.zeros(len(codes), dtype=np.int64)
        gnames: list[str] = []
    else:
        gvals = np.asarray(groups)
        if gvals.shape != codes.shape:
            raise DataError(f"groups has shape {gvals.shape}, expected ({len(codes)},).")
        # NaN, None and empty cells are one group that says so (not "nan" or "")
        missing = np.array(
            [v is None or v != v or not str(v).strip() for v in gvals.tolist()], dtype=bool
        )
        labels = np.where(missing, MISSING_GROUP, gvals.astype(str))
        uniq, gcodes = np.unique(labels, return_inverse=True)
        gnames = [str(u) for u in uniq]
        gcodes = gcodes.astype(np.int64)
    n_groups = max(len(gnames), 1)
    strata = gcodes * len(classes) + codes
    ident = np.arange(len(codes), dtype=np.int64)[None, :]
    point = _kernels.replicate_metrics(ident, codes, pred, proba, gcodes, n_groups, len(classes))[
        0
    ]
    if n_boot > 0:
        idx = _kernels.bootstrap_indices(strata, n_groups * len(classes), int(n_boot), int(seed))
        reps = _kernels.replicate_metrics(idx, codes, pred, proba, gcodes, n_groups, len(classes))
    else:
        reps = np.full((0, n_groups + 1, 3), np.nan)
    # reorder: all, groups..., worst
    order = [n_groups] + (list(range(n_groups)) if gnames else [])
    est = point[order]
    boot = reps[:, order]
    names = ["all", *gnames]
    alpha = (1.0 - ci) / 2.0
    with warnings.catch_warnings():
        # a metric undefined in every replicate (AUROC of a one-class group) stays nan
        warnings.simplefilter("ignore", RuntimeWarning)
        if gnames:
            est = np.vstack([est, np.nanmin(point[:n_groups], axis=0)[None]])
            worst = np.nanmin(reps[:, :n_groups], axis=1) if n_boot > 0 else reps[:, :1]
            boot = np.concatenate([boot, worst[:, None]], axis=1) if n_boot > 0 else boot
            names.append("worst")
        if n_boot > 0:
            lo = np.nanquantile(boot, alpha, axis=0)
            hi = np.nanquantile(boot, 1.0 - alpha, axis=0)
        else:
            lo = hi = np.full_like(est, np.nan)
    counts = [len(codes)] + [int((gcodes == g).sum()) for g in range(len(gnames))]
    if gnames:
        counts.append(int(np.bincount(gcodes).min()))
    dims = ("group", "metric")
    return xr.Dataset(
        {
            "estimate": (dims, est),
            "ci_low": (dims, lo),
            "ci_high": (dims, hi),
            "n_samples": (("group",), np.asarray(counts)),
        },
        coords={"group": names, "metric": list(METRICS)},
        attrs={"n_boot": int(n_boot), "ci": float(ci), "seed": int(seed), "stratified": 1},
    )
