"""Concept interventions: set concepts to chosen values and re-predict.

"present" and "absent" are the 95th and 5th percentiles of a concept's training (reference)
scores, as Koh et al. (2020, "Concept Bottleneck Models") intervene on continuous concept
predictions, rather than raw 0/1 values that a CLIP similarity never takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from conceptlens._numeric import trapezoid as _trapezoid
from conceptlens._samples import sample_values
from conceptlens.exceptions import ConfigError, DataError, unknown_names
from conceptlens.explain import concept_matrix, contributions, head_parameters

__all__ = ["concept_annotations", "intervene", "intervention_curve", "reference_levels"]

_KEYWORDS = ("present", "absent", "mean", "truth")


def reference_levels(
    model: Any,
    reference_scores: Any,
    *,
    low: float = 5.0,
    high: float = 95.0,
    method: str = "percentile",
) -> xr.Dataset:
    """Per-concept "absent", "present" and neutral ("mean") values from reference scores.

    Parameters
    ----------
    model : fitted concept head
    reference_scores : xr.DataArray (sample, concept) or array
        Usually the training scores of the head.
    low, high : float
        Percentiles used for "absent" and "present" (default 5 and 95).
    method : {"percentile", "annotated"}
        "percentile": the ``low``/``high`` percentiles (Koh et al. 2020).  "annotated":
        the mean reference score of the samples annotated absent / present (needs
        concept annotations on ``reference_scores``, see :func:`concept_annotations`);
        concepts without annotations fall back to the percentiles.

    Returns
    -------
    xr.Dataset
        ``absent``, ``present``, ``mean`` with dims ("concept",).

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import SparseLinearHead
    >>> from conceptlens.masking import reference_levels
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 2)); y = (X[:, 0] > 0).astype(int)
    >>> lv = reference_levels(SparseLinearHead(C=1.0).fit(X, y), X)
    >>> bool((lv.present > lv.absent).all())
    True
    """
    if reference_scores is None:
        raise ConfigError(
            "'present', 'absent', 'mean' and 'truth' are read from the head's training "
            "scores, which the head does not store; pass reference_scores=<training scores>."
        )
    if not 0.0 <= low < high <= 100.0:
        raise ConfigError(f"need 0 <= low < high <= 100, got low={low}, high={high}.")
    if method not in ("percentile", "annotated"):
        raise ConfigError(f"method must be 'percentile' or 'annotated', got {method!r}.")
    R, _ = concept_matrix(model, reference_scores, where="reference_scores")
    names = head_parameters(model, reference_scores)["concept"].values
    absent, present = np.percentile(R, low, axis=0), np.percentile(R, high, axis=0)
    if method == "annotated":
        G = _truth_matrix(None, reference_scores, names.astype(str), len(R))
        for j in range(R.shape[1]):
            on, off = G[:, j] > 0.5, G[:, j] <= 0.5
            if on.any() and off.any():
                present[j], absent[j] = R[on, j].mean(), R[off, j].mean()
    return xr.Dataset(
        {
            "absent": ("concept", absent),
            "present": ("concept", present),
            "mean": ("concept", R.mean(axis=0)),
        },
        coords={"concept": names},
        attrs={"method": method, "low_percentile": low, "high_percentile": high},
    )


def concept_annotations(scores: xr.DataArray, concepts: Any = None) -> xr.DataArray:
    """Ground-truth 0/1 concept annotations carried as sample coordinates of ``scores``.

    Datasets with concept annotations (SynthDerm, Derm7pt-style manifests) keep one
    ``sample`` coordinate per concept, named like the concept.

    Returns
    -------
    xr.DataArray, dims ("sample", "concept"), name "annotation"
        Only the concepts that have such a coordinate.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.masking import concept_annotations
    >>> s = xr.DataArray(np.zeros((2, 2)), dims=("sample", "concept"),
    ...                  coords={"concept": ["ruler", "hair"], "ruler": ("sample", [1, 0])})
    >>> concept_annotations(s).concept.values.tolist()
    ['ruler']
    """
    if not isinstance(scores, xr.DataArray) or "concept" not in scores.coords:
        raise DataError("concept annotations are read from a labelled concept_score DataArray.")
    names = [str(c) for c in (scores["concept"].values if concepts is None else concepts)]
    have = [c for c in names if c in scores.coords and scores[c].dims == ("sample",)]
    if not have:
        raise DataError(
            "the scores carry no concept annotations (no sample coordinate named like a "
            "concept); pass ground_truth=<DataArray (sample, concept) of 0/1>."
        )
    values = np.column_stack([np.asarray(scores[c].values, dtype=float) for c in have])
    return xr.DataArray(
        values,
        dims=("sample", "concept"),
        coords={"sample": scores["sample"].values, "concept": have},
        name="annotation",
    )


def _truth_matrix(ground_truth: Any, scores: Any, names: np.ndarray, n: int) -> np.ndarray:
    """(n, d) float with NaN where a concept has no annotation."""
    if ground_truth is None:
        if not isinstance(scores, xr.DataArray):
            raise DataError(
                "concept annotations are read from a labelled concept_score DataArray; pass "
                "ground_truth=<DataArray (sample, concept) of 0/1>."
            )
        ground_truth = concept_annotations(scores, names)
    if not isinstance(ground_truth, xr.DataArray):
        G = np.asarray(ground_truth, dtype=float)
        if G.shape != (n, len(names)):
            raise DataError(
                f"ground_truth has shape {G.shape}; expected (n_samples, n_concepts) = "
                f"({n}, {len(names)}) or a labelled DataArray."
            )
        return G
    # annotations with sample names are matched to the scores by name, not position
    ground_truth = sample_values(scores, ground_truth, name="ground_truth")
    ground_truth = ground_truth.transpose("sample", "concept")
    if ground_truth.sizes["sample"] != n:
        raise DataError(
            f"ground_truth has {ground_truth.sizes['sample']} samples, the scores {n}."
        )
    G = np.full((n, len(names)), np.nan)
    have = [str(c) for c in ground_truth["concept"].values]
    for j, c in enumerate(names):
        if c in have:
            G[:, j] = ground_truth.sel(concept=c).values
    return G


def _proba(model: Any, X: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_proba(X), dtype=float)


def intervene(
    model: Any,
    scores: Any,
    changes: Mapping[str, Any],
    *,
    reference_scores: Any = None,
    ground_truth: Any = None,
    levels: str = "percentile",
) -> xr.Dataset:
    """Set concepts to new values and re-predict.

    Parameters
    ----------
    model : fitted concept head
    scores : xr.DataArray (sample, concept) or array
    changes : mapping concept -> value
        A number, ``"present"`` / ``"absent"`` (95th / 5th percentile of the concept's
        reference scores), ``"mean"`` (the reference mean: zero contribution) or
        ``"truth"`` (present or absent according to the sample's ground truth).
    reference_scores : xr.DataArray or array, optional
        The head's training scores; required for the keyword values.
    ground_truth : xr.DataArray (sample, concept) of 0/1, optional
        Annotations for ``"truth"``; by default the sample coordinates of ``scores``
        named like the concepts.
    levels : {"percentile", "annotated"}
        How "present"/"absent" are set (see :func:`reference_levels`).

    Returns
    -------
    xr.Dataset
        ``score_before``/``score_after`` (sample, concept), ``changed`` (sample,
        concept), ``proba_before``/``proba_after`` (sample, class) and
        ``prediction_before``/``prediction_after`` (sample,), or (sample, class) of 0/1
        for a multi-label head.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.heads import ConceptBottleneckClassifier
    >>> from conceptlens.masking import intervene
    >>> rng = np.random.default_rng(0)
    >>> s = xr.DataArray(rng.normal(size=(300, 2)), dims=("sample", "concept"),
    ...                  coords={"concept": ["veil", "ruler"]})
    >>> y = np.where(s.sel(concept="veil") + rng.normal(size=300) > 0, "mel", "nev")
    >>> cbm = ConceptBottleneckClassifier(C=0.1).fit(s, y)
    >>> out = intervene(cbm, s[:5], {"veil": "present"}, reference_scores=s)
    >>> out.prediction_after.values.tolist()
    ['mel', 'mel', 'mel', 'mel', 'mel']
    """
    X, labelled = concept_matrix(model, scores)
    params = head_parameters(model, X if reference_scores is None else reference_scores)
    names = params["concept"].values.astype(str)
    unknown = [c for c in changes if str(c) not in set(names)]
    if unknown:
        raise DataError("changes: " + unknown_names("concept", unknown, names))
    needs_ref = any(isinstance(v, str) for v in changes.values())
    lv = reference_levels(model, reference_scores if needs_ref else X, method=levels)
    G = None
    Xa = X.copy()
    for c, v in changes.items():
        j = int(np.flatnonzero(names == str(c))[0])
        if isinstance(v, str):
            if v not in _KEYWORDS:
                raise ConfigError(f"unknown value {v!r} for {c!r}; use a number or {_KEYWORDS}.")
            if v == "truth":
                if G is None:
                    G = _truth_matrix(ground_truth, scores, names, len(X))
                if np.isnan(G[:, j]).any():
                    raise DataError(f"no ground-truth annotation for concept {c!r}.")
                Xa[:, j] = np.where(G[:, j] > 0.5, lv["present"].values[j], lv["absent"].values[j])
            else:
                Xa[:, j] = lv[v].values[j]
        else:
            value = float(v)
            if not np.isfinite(value):
                raise DataError(f"the new value of {c!r} is not finite ({v!r}).")
            Xa[:, j] = value
    classes = params["class"].values
    pb, pa = _proba(model, X), _proba(model, Xa)
    sample = (
        np.asarray(labelled[labelled.dims[0]].values)
        if labelled is not None and labelled.dims[0] in labelled.coords
        else np.arange(len(X))
    )
    coords = {"sample": sample, "concept": names, "class": classes}
    # multi-label heads predict a 0/1 row per sample
    pdims = ("sample", "class") if params.attrs["kind"] == "multilabel" else ("sample",)
    return xr.Dataset(
        {
            "score_before": (("sample", "concept"), X),
            "score_after": (("sample", "concept"), Xa),
            "changed": (("sample", "concept"), Xa != X),
            "proba_before": (("sample", "class"), pb),
            "proba_after": (("sample", "class"), pa),
            "prediction_before": (pdims, np.asarray(model.predict(X)).astype(str)),
            "prediction_after": (pdims, np.asarray(model.predict(Xa)).astype(str)),
        },
        coords=coords,
    )


def _auc(curve: np.ndarray) -> float:
    x = np.linspace(0.0, 1.0, len(curve))
    return _trapezoid(curve, x) if len(curve) > 1 else float(curve[0])


def intervention_curve(
    model: Any,
    scores: Any,
    labels: Any,
    *,
    reference_scores: Any,
    ground_truth: Any = None,
    order: str = "uncertainty",
    levels: str = "percentile",
    n_random: int = 20,
    seed: int = 0,
) -> xr.Dataset:
    """Accuracy as the k first concepts are corrected to ground truth, k = 0..K.

    For each sample, the annotated concepts are ranked by ``order`` and the first ``k``
    are set to "present" or "absent" according to the annotation (Koh et al. 2020's
    test-time intervention); the same is done in random order, averaged over
    ``n_random`` seeds.

    Parameters
    ----------
    model : fitted single-label concept head
    scores : xr.DataArray (sample, concept)
    labels : array (n_samples,) or the name of a sample coordinate
    reference_scores : xr.DataArray or array
        Training scores (for the percentiles).
    ground_truth : optional
        As in :func:`intervene`.
    order : {"uncertainty", "contribution"}
        "uncertainty": concepts whose score lies closest to the midpoint between
        "absent" and "present" first (relative to that range); "contribution": the
        largest absolute contribution to the predicted class first.
    levels : {"percentile", "annotated"}
        Values a corrected concept is set to (see :func:`reference_levels`).
    n_random, seed : int
        Random orders averaged for the baseline.

    Returns
    -------
    xr.Dataset
        ``accuracy`` (order, k) with order ``[order, "random"]``, ``accuracy_random_sd``
        (k,), ``auc`` (order,) (area under accuracy vs k/K).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.heads import ConceptBottleneckClassifier
    >>> from conceptlens.masking import intervention_curve
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.integers(0, 2, size=(400, 3))
    >>> y = np.where(truth[:, 0] + truth[:, 1] > 0, "mel", "nev")
    >>> s = xr.DataArray(truth + rng.normal(scale=0.8, size=(400, 3)), dims=("sample", "concept"),
    ...                  coords={"concept": ["a", "b", "c"], "a": ("sample", truth[:, 0]),
    ...                          "b": ("sample", truth[:, 1]), "c": ("sample", truth[:, 2])})
    >>> cbm = ConceptBottleneckClassifier(C=0.1).fit(s, y)
    >>> res = intervention_curve(cbm, s, y, reference_scores=s, n_random=3)
    >>> float(res.accuracy.isel(k=-1).sel(order="uncertainty")) > 0.95
    True
    """
    if order not in ("uncertainty", "contribution"):
        raise ConfigError(f"order must be 'uncertainty' or 'contribution', got {order!r}.")
    X, _ = concept_matrix(model, scores)
    if isinstance(labels, str):
        if not isinstance(scores, xr.DataArray) or labels not in scores.coords:
            raise DataError(f"label column {labels!r} is not a sample coordinate of the scores.")
        labels = scores[labels].values
    y = np.asarray(sample_values(scores, labels)).astype(str)
    if len(y) != len(X):
        raise DataError(f"{len(y)} labels for {len(X)} samples.")
    params = head_parameters(model, reference_scores)
    known = [str(c) for c in params["class"].values]
    unknown = sorted(set(y.tolist()) - set(known))
    if unknown:  # they would count as errors at every k: a curve of the wrong labels
        raise DataError(
            f"labels {unknown[:5]} are not classes of the model {known}; pass the true "
            "class of each sample, spelled as in training."
        )
    names = params["concept"].values.astype(str)
    lv = reference_levels(model, reference_scores, method=levels)
    G = _truth_matrix(ground_truth, scores, names, len(X))
    annotated = np.flatnonzero(~np.isnan(G).any(axis=0))
    if annotated.size == 0:
        raise DataError("no concept of the model has a ground-truth annotation.")
    lo, hi = lv["absent"].values, lv["present"].values
    target = np.where(G > 0.5, hi, lo)
    K = annotated.size
    if order == "uncertainty":
        mid, span = (lo + hi) / 2, np.maximum(hi - lo, 1e-12)
        key = np.abs(X - mid) / span  # small = uncertain, corrected first
    else:
        c = contributions(model, X, background=reference_scores)
        pred = np.asarray(model.predict(X)).astype(str)
        k_idx = np.searchsorted(params["class"].values.astype(str), pred)
        key = -np.abs(c.values[np.arange(len(X)), k_idx, :])
    sub = key[:, annotated]
    ranked = annotated[np.argsort(sub, axis=1, kind="stable")]

    def curve(ranks: np.ndarray) -> np.ndarray:
        acc = np.empty(K + 1)
        Xk = X.copy()
        rows = np.arange(len(X))
        acc[0] = np.mean(np.asarray(model.predict(Xk)).astype(str) == y)
        for k in range(K):
            cols = ranks[:, k]
            Xk[rows, cols] = target[rows, cols]
            acc[k + 1] = np.mean(np.asarray(model.predict(Xk)).astype(str) == y)
        return acc

    main = curve(ranked)
    rng = np.random.default_rng(seed)
    rand = np.stack(
        [curve(annotated[np.argsort(rng.random((len(X), K)), axis=1)]) for _ in range(n_random)]
    )
    return xr.Dataset(
        {
            "accuracy": (("order", "k"), np.vstack([main, rand.mean(axis=0)])),
            "accuracy_random_sd": ("k", rand.std(axis=0)),
            "auc": ("order", [_auc(main), _auc(rand.mean(axis=0))]),
        },
        coords={"order": [order, "random"], "k": np.arange(K + 1)},
        attrs={
            "concepts": [str(names[j]) for j in annotated],
            "n_random": n_random,
            "levels": levels,
        },
    )
