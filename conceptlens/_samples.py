"""Pair per-sample values (labels, groups) with scores by sample name (imports no layer)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from conceptlens.exceptions import DataError

__all__ = ["sample_values"]


def sample_values(scores: Any, values: Any, *, name: str = "labels") -> Any:
    """``values`` in the sample order of ``scores`` when both carry sample names.

    A :class:`pandas.Series` indexed by sample name, or a DataArray with a ``sample``
    coordinate, is reindexed to ``scores["sample"]`` (a shuffled or sorted Series would
    otherwise be paired with the wrong images by position).  A Series with a default
    ``RangeIndex`` or an index that names none of the samples, a list or an array is
    paired by position.  A sample of
    ``scores`` that ``values`` lacks raises :class:`DataError` naming it.

    Examples
    --------
    >>> import pandas as pd, xarray as xr
    >>> s = xr.DataArray([[1.0], [2.0]], dims=("sample", "concept"),
    ...                  coords={"sample": ["a", "b"], "concept": ["c"]})
    >>> list(sample_values(s, pd.Series(["x", "y"], index=["b", "a"])))
    ['y', 'x']
    """
    if not isinstance(scores, xr.DataArray) or "sample" not in scores.coords:
        return values
    if isinstance(values, xr.DataArray):
        if "sample" not in values.coords:
            return values.values
        index = pd.Index(np.asarray(values["sample"].values))
        values = pd.Series(np.asarray(values.values).ravel(), index=index)
    if not isinstance(values, pd.Series) or isinstance(values.index, pd.RangeIndex):
        return values.values if isinstance(values, pd.Series) else values
    samples = pd.Index(np.asarray(scores["sample"].values))
    if not samples.isin(values.index).any():
        return values.values  # an index unrelated to the sample names: by position
    if values.index.has_duplicates:
        dup = values.index[values.index.duplicated()][0]
        raise DataError(f"{name} name sample {dup!r} more than once; keep one value per sample.")
    missing = samples.difference(values.index, sort=False)
    if len(missing):
        raise DataError(
            f"{name} are indexed by sample name but lack {len(missing)} sample(s) of the "
            f"scores: {list(missing[:5])}{' ...' if len(missing) > 5 else ''}; pass a value "
            f"for every sample (or use .values to pair them by position)."
        )
    return values.reindex(samples).values
