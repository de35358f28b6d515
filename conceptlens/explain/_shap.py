"""Adapter to ``shap.Explanation`` (the only module that imports shap)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from conceptlens.exceptions import DataError, MissingDependencyError

__all__ = ["to_shap"]


def _shap() -> Any:
    try:
        import shap
    except ImportError as exc:  # pragma: no cover - shap is a dependency
        raise MissingDependencyError("to_shap needs the `shap` package: pip install shap") from exc
    return shap


def to_shap(contributions: xr.DataArray, cls: str | None = None) -> Any:
    """Wrap concept contributions in a ``shap.Explanation`` for shap's plots.

    Parameters
    ----------
    contributions : xr.DataArray, dims ("sample", "class", "concept")
        Output of :func:`conceptlens.explain.contributions`.
    cls : str, optional
        One class: the Explanation then has a single output, values
        ``(n_samples, n_concepts)``, which is what ``shap.plots.waterfall``,
        ``shap.plots.beeswarm`` and ``shap.plots.bar`` take directly.

    Returns
    -------
    shap.Explanation
        Without ``cls``: values ``(n_samples, n_concepts, n_classes)``, base values
        ``(n_samples, n_classes)``, data (the concept scores), ``feature_names`` (the
        concepts) and ``output_names`` (the classes).  shap's plots draw one output at a
        time, so slice the last axis first: ``exp[:, :, 1]`` for beeswarm/bar over all
        samples, ``exp[0, :, 1]`` for one sample's waterfall (or pass ``cls=`` here).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.heads import ConceptBottleneckClassifier
    >>> from conceptlens.explain import contributions, to_shap
    >>> rng = np.random.default_rng(0)
    >>> s = xr.DataArray(rng.normal(size=(50, 3)), dims=("sample", "concept"),
    ...                  coords={"concept": ["veil", "streaks", "ruler"]})
    >>> y = np.where(s.sel(concept="veil") > 0, "melanoma", "nevus")
    >>> exp = to_shap(contributions(ConceptBottleneckClassifier(C=1.0).fit(s, y), s))
    >>> exp.values.shape, exp.output_names
    ((50, 3, 2), ['melanoma', 'nevus'])
    """
    shap = _shap()
    if not isinstance(contributions, xr.DataArray) or set(contributions.dims) != {
        "sample",
        "class",
        "concept",
    }:
        raise DataError(
            "to_shap expects the DataArray returned by conceptlens.explain.contributions "
            "(dims 'sample', 'class', 'concept')."
        )
    c = contributions.transpose("sample", "concept", "class")
    n = c.sizes["sample"]
    base = np.broadcast_to(np.asarray(c["base_value"].values, dtype=float), (n, c.sizes["class"]))
    data = c["score"].transpose("sample", "concept").values if "score" in c.coords else None
    features = [str(v) for v in c["concept"].values]
    outputs = [str(v) for v in c["class"].values]
    instances = [str(v) for v in c["sample"].values] if "sample" in c.coords else None
    if cls is not None:
        if str(cls) not in outputs:
            raise DataError(f"unknown class {cls!r}; the classes are {outputs}.")
        k = outputs.index(str(cls))
        return shap.Explanation(
            values=np.ascontiguousarray(c.values[:, :, k]),
            base_values=np.ascontiguousarray(base[:, k]),
            data=data,
            feature_names=features,
            instance_names=instances,
        )
    return shap.Explanation(
        values=np.ascontiguousarray(c.values),
        base_values=np.ascontiguousarray(base),
        data=data,
        feature_names=features,
        output_names=outputs,
        instance_names=instances,
    )
