"""Exact concept contributions of a fitted linear concept head.

A concept-bottleneck head is linear in logit space, ``logit_k(x) = b_k + w_k . x``, so the
interventional SHAP value of concept ``j`` for class ``k`` is exactly
``w_kj * (x_j - mu_j)`` with ``mu`` the mean of the background (reference) scores, and
the base value is ``b_k + w_k . mu`` (Lundberg & Lee 2017, the linear case).  Nothing is
sampled or approximated here: the decomposition is exact and additive.

Only the public attributes of a fitted head are read (``coef_``, ``intercept_``,
``classes_``, ``concept_names_``, ``mean_``/``scale_``, ``predict``), so any scikit-learn
style linear classifier with those attributes can be explained.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError

__all__ = [
    "concept_matrix",
    "contributions",
    "global_importance",
    "head_parameters",
    "standardized_weights",
    "top_concepts",
]


def _find(model: Any, name: str) -> Any:
    """A fitted attribute on the model or on its inner head (``head_``)."""
    if hasattr(model, name):
        return getattr(model, name)
    inner = getattr(model, "head_", None)
    if inner is not None and hasattr(inner, name):
        return getattr(inner, name)
    return None


def _concept_names(model: Any, coef: Any, d: int) -> np.ndarray:
    if isinstance(coef, xr.DataArray) and "concept" in coef.coords:
        return np.asarray(coef["concept"].values).astype(str)
    for attr in ("concept_names_", "feature_names_in_"):
        names = getattr(model, attr, None)
        if names is not None and len(names) == d:
            return np.asarray(names).astype(str)
    return np.array([f"concept_{j}" for j in range(d)])


def _is_multilabel(model: Any, d: int) -> bool:
    # single-label heads predict one label per sample; multi-label ones a 0/1 row
    pred = model.predict(np.zeros((1, d)))
    return np.ndim(np.asarray(pred)) == 2


def _model_concepts(model: Any) -> np.ndarray:
    coef = getattr(model, "coef_", None)
    if coef is None:
        raise ConfigError(
            f"{type(model).__name__} is not fitted (no coef_); fit it before explaining."
        )
    return _concept_names(model, coef, np.atleast_2d(np.asarray(coef)).shape[1])


def concept_matrix(model: Any, scores: Any, *, where: str = "scores") -> tuple[np.ndarray, Any]:
    """Validate ``scores`` against a fitted head and return them as a matrix.

    Parameters
    ----------
    model : fitted concept head
    scores : xr.DataArray (sample, concept) or array (n_samples, n_concepts)
        Concept scores; a DataArray is aligned to the model's concepts by name.
    where : str
        How to call ``scores`` in error messages.

    Returns
    -------
    X : ndarray (n_samples, n_concepts)
        In the model's concept order.
    labelled : xr.DataArray or None
        ``scores`` aligned to the model's concepts (None for a plain array).

    Raises
    ------
    DataError
        Concepts missing from ``scores``, a column count that differs from the model's,
        or NaN/infinite scores (the message names the concepts).
    """
    names = _model_concepts(model)
    labelled = None
    if isinstance(scores, xr.DataArray):
        if scores.ndim == 1 and "concept" in scores.dims:
            scores = scores.expand_dims("sample")
        if scores.ndim != 2 or "concept" not in scores.dims:
            raise DataError(
                f"{where} must be a 2-D DataArray with dims ('sample', 'concept'); got dims "
                f"{scores.dims}."
            )
        other = next(d for d in scores.dims if d != "concept")
        scores = scores.transpose(other, "concept")
        if "concept" in scores.coords:
            have = np.asarray(scores["concept"].values).astype(str)
            missing = [str(c) for c in names if c not in set(have)]
            if missing:
                raise DataError(
                    f"{where} lack {len(missing)} concept(s) the model was fitted on: "
                    f"{missing[:5]}{' ...' if len(missing) > 5 else ''}; score the same "
                    "concept bank the model was trained on."
                )
            if len(set(have)) != len(have):
                raise DataError(f"{where} have duplicated concept names; drop the duplicates.")
            scores = scores.sel(concept=names)
        elif scores.sizes["concept"] != len(names):
            raise DataError(
                f"{where} have {scores.sizes['concept']} concepts, the model "
                f"{len(names)}; score the same concept bank."
            )
        labelled = scores
        X = np.asarray(scores.values, dtype=float)
    else:
        X = np.asarray(scores, dtype=float)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != len(names):
            raise DataError(
                f"{where} have shape {X.shape}; the model expects (n_samples, {len(names)}) "
                "concept scores in the order of its concepts."
            )
    bad = ~np.isfinite(X)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0))
        raise DataError(
            f"{where} contain {int(bad.sum())} NaN or infinite value(s) in "
            f"{int(bad.any(axis=1).sum())} sample(s), in concept(s) "
            f"{[str(names[j]) for j in cols[:5]]}; drop those samples or rescore the images."
        )
    return X, labelled


def head_parameters(model: Any, background: Any = None) -> xr.Dataset:
    """The linear head as labelled arrays, one row per class.

    Parameters
    ----------
    model : fitted ConceptBottleneckClassifier or SparseLinearHead
    background : xr.DataArray or array (n_samples, n_concepts), optional
        Reference scores (usually the training scores) whose mean is the baseline and
        whose standard deviation is the scale.  By default the head's own
        standardisation (``mean_``, ``scale_``) is used; a head fitted with
        ``standardize=False`` stores none, so ``background`` is then required.

    Returns
    -------
    xr.Dataset
        ``coef`` (class, concept) on the scale of the raw scores, ``intercept`` (class,),
        ``baseline`` (concept,), ``scale`` (concept,).  attrs ``kind`` ("binary",
        "multinomial" or "multilabel") and ``baseline_source``.  A binary head gets two
        rows: the second class's row is the log-odds weight vector and the first
        class's row its negative.

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import SparseLinearHead
    >>> from conceptlens.explain import head_parameters
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 3)); y = (X[:, 0] > 0).astype(int)
    >>> p = head_parameters(SparseLinearHead(C=1.0).fit(X, y))
    >>> p.coef.dims, p.attrs["kind"]
    (('class', 'concept'), 'binary')
    """
    names = _model_concepts(model)
    coef_raw = model.coef_
    coef = np.atleast_2d(np.asarray(coef_raw, dtype=float))
    intercept = np.atleast_1d(np.asarray(model.intercept_, dtype=float))
    classes = np.asarray(model.classes_)
    d = coef.shape[1]
    multilabel = _is_multilabel(model, d)
    if multilabel:
        kind = "multilabel"
    elif len(classes) == 2:
        kind = "binary"
        if coef.shape[0] == 1:
            coef = np.vstack([-coef, coef])
            intercept = np.concatenate([-intercept, intercept])
    else:
        kind = "multinomial"
    if coef.shape[0] != len(classes):
        raise ConfigError(
            f"the model has {coef.shape[0]} weight rows for {len(classes)} classes; it is "
            "not a linear head conceptlens can explain."
        )
    if background is not None:
        B, _ = concept_matrix(model, background, where="background")
        if len(B) == 0:
            raise DataError(
                "background holds 0 samples, so it has no mean (the contributions would be "
                "NaN); pass the training scores (or leave background=None)."
            )
        baseline = B.mean(axis=0)
        scale = B.std(axis=0)
        scale[scale < 1e-12 * (1.0 + np.abs(baseline))] = 1.0
        source = "background"
    else:
        mean = _find(model, "mean_")
        scale = _find(model, "scale_")
        standardized = bool(getattr(model, "standardize", True))
        if mean is None or scale is None or not standardized:
            raise ConfigError(
                f"{type(model).__name__} was fitted without standardisation, so it stores "
                "no training mean to use as the baseline; pass background=<training scores>."
            )
        baseline = np.asarray(mean, dtype=float).copy()
        scale = np.asarray(scale, dtype=float).copy()
        source = "training mean (head standardisation)"
    cls = [str(c) for c in classes]
    return xr.Dataset(
        {
            "coef": (("class", "concept"), coef),
            "intercept": (("class",), intercept),
            "baseline": (("concept",), baseline),
            "scale": (("concept",), scale),
        },
        coords={"class": cls, "concept": names},
        attrs={"kind": kind, "baseline_source": source},
    )


def contributions(model: Any, scores: Any, *, background: Any = None) -> xr.DataArray:
    """Exact per-concept contributions to each class logit (linear SHAP values).

    ``contribution[i, k, j] = coef[k, j] * (score[i, j] - baseline[j])``, where the
    baseline is the training mean the head standardised with (or the mean of
    ``background``).  This is the interventional SHAP value of a linear model in logit
    space, so ``contribution.sum("concept") + base_value`` equals the head's
    ``decision_function`` (for a binary head: the second class's row; the first class's
    row is its negative).

    Parameters
    ----------
    model : fitted ConceptBottleneckClassifier or SparseLinearHead
    scores : xr.DataArray (sample, concept) or array (n_samples, n_concepts)
        Scores to explain, aligned to the model's concepts by name.
    background : xr.DataArray or array, optional
        Reference scores whose mean is the baseline (required for heads fitted with
        ``standardize=False``).

    Returns
    -------
    xr.DataArray, dims ("sample", "class", "concept"), name "contribution"
        Coordinates: ``base_value`` (class,), ``baseline`` (concept,), ``score``
        (sample, concept), every sample coordinate of ``scores`` and ``concept_group``
        when the scores carry it.  attrs: ``kind``, ``baseline_source``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.heads import ConceptBottleneckClassifier
    >>> from conceptlens.explain import contributions
    >>> rng = np.random.default_rng(0)
    >>> s = xr.DataArray(rng.normal(size=(200, 3)), dims=("sample", "concept"),
    ...                  coords={"concept": ["veil", "streaks", "ruler"]})
    >>> y = np.where(s.sel(concept="veil") + rng.normal(size=200) > 0, "melanoma", "nevus")
    >>> cbm = ConceptBottleneckClassifier(C=0.1).fit(s, y)
    >>> c = contributions(cbm, s)
    >>> logit = c.sum("concept") + c.base_value
    >>> bool(np.allclose(logit, cbm.decision_function(s).transpose(*logit.dims)))
    True
    """
    params = head_parameters(model, background)
    X, labelled = concept_matrix(model, scores)
    W = params["coef"].values
    mu = params["baseline"].values
    values = (X - mu)[:, None, :] * W[None, :, :]
    base = params["intercept"].values + W @ mu
    coords: dict[str, Any] = {
        "class": params["class"].values,
        "concept": params["concept"].values,
        "base_value": ("class", base),
        "baseline": ("concept", mu),
        "score": (("sample", "concept"), X),
    }
    if labelled is not None:
        sdim = labelled.dims[0]
        if sdim in labelled.coords:
            coords["sample"] = np.asarray(labelled[sdim].values)
        for name, coord in labelled.coords.items():
            if name in (sdim, "concept"):
                continue
            if coord.dims == (sdim,):
                coords[str(name)] = ("sample", coord.values)
            elif coord.dims == ("concept",):
                coords[str(name)] = ("concept", coord.values)
    return xr.DataArray(
        values,
        dims=("sample", "class", "concept"),
        coords=coords,
        name="contribution",
        attrs={"kind": params.attrs["kind"], "baseline_source": params.attrs["baseline_source"]},
    )


def standardized_weights(model: Any, *, background: Any = None) -> xr.DataArray:
    """Weights per standard deviation of each concept score: ``coef * scale``.

    A value is the change in the class logit when that concept's score rises by one
    training standard deviation, so concepts are comparable whatever their raw range.

    Parameters
    ----------
    model : fitted concept head
    background : optional
        Reference scores whose standard deviation is the unit (required for heads
        fitted with ``standardize=False``).

    Returns
    -------
    xr.DataArray, dims ("class", "concept"), name "weight_per_sd"

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import SparseLinearHead
    >>> from conceptlens.explain import standardized_weights
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 3)) * [1, 10, 100]; y = (X[:, 1] > 0).astype(int)
    >>> standardized_weights(SparseLinearHead(C=1.0).fit(X, y)).dims
    ('class', 'concept')
    """
    p = head_parameters(model, background)
    out = p["coef"] * p["scale"]
    out.name = "weight_per_sd"
    out.attrs = {"units": "logit per training standard deviation of the score"}
    return out


def global_importance(model: Any, *, background: Any = None) -> xr.DataArray:
    """Global concept importance: mean over classes of ``|weight per standard deviation|``.

    Returns
    -------
    xr.DataArray, dims ("concept",), name "importance"
        Sorted in decreasing order (ties keep the model's concept order).

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import SparseLinearHead
    >>> from conceptlens.explain import global_importance
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = (X[:, 2] > 0).astype(int)
    >>> str(global_importance(SparseLinearHead(C=1.0).fit(X, y)).concept.values[0])
    'concept_2'
    """
    w = standardized_weights(model, background=background)
    imp = abs(w).mean("class")
    order = np.argsort(-imp.values, kind="stable")
    out = imp.isel(concept=order)
    out.name = "importance"
    out.attrs = {"units": "mean |logit| per training standard deviation of the score"}
    return out


def top_concepts(model: Any, k: int = 5, *, background: Any = None) -> xr.DataArray:
    """The ``k`` concepts with the largest absolute weight per standard deviation, per class.

    Returns
    -------
    xr.DataArray, dims ("class", "rank"), name "weight_per_sd"
        Signed weights (positive: evidence for the class); coordinate ``concept``
        (class, rank) holds the names.  Rows with fewer than ``k`` non-zero weights are
        padded with NaN and an empty name.

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import SparseLinearHead
    >>> from conceptlens.explain import top_concepts
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = (X[:, 2] > 0).astype(int)
    >>> t = top_concepts(SparseLinearHead(C=1.0).fit(X, y), k=1)
    >>> str(t.concept.sel({"class": "1"}).values[0])
    'concept_2'
    """
    if int(k) < 1:
        raise ConfigError(f"k must be at least 1, got {k!r}.")
    w = standardized_weights(model, background=background)
    k = min(int(k), w.sizes["concept"])
    vals = np.full((w.sizes["class"], k), np.nan)
    names = np.full((w.sizes["class"], k), "", dtype=object)
    concepts = w["concept"].values
    for i, row in enumerate(w.values):
        order = [j for j in np.argsort(-np.abs(row), kind="stable") if row[j] != 0][:k]
        vals[i, : len(order)] = row[order]
        names[i, : len(order)] = concepts[order]
    return xr.DataArray(
        vals,
        dims=("class", "rank"),
        coords={
            "class": w["class"].values,
            "rank": np.arange(1, k + 1),
            "concept": (("class", "rank"), names.astype(str)),
        },
        name="weight_per_sd",
        attrs=w.attrs,
    )
