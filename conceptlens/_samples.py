"""Pair per-sample values (labels, groups) with scores by sample name (imports no layer)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from conceptlens.exceptions import DataError

__all__ = ["sample_values"]


def _check(have: pd.Index, samples: pd.Index, name: str) -> None:
    if have.has_duplicates:
        dup = have[have.duplicated()][0]
        raise DataError(f"{name} name sample {dup!r} more than once; keep one value per sample.")
    missing = samples.difference(have, sort=False)
    if len(missing):
        raise DataError(
            f"{name} are indexed by sample name but lack {len(missing)} sample(s) of the "
            f"scores: {list(missing[:5])}{' ...' if len(missing) > 5 else ''}; pass a value "
            f"for every sample (or use .values to pair them by position)."
        )


def sample_values(scores: Any, values: Any, *, name: str = "labels") -> Any:
    """``values`` in the sample order of ``scores`` when both carry sample names.

    A :class:`pandas.Series` or DataFrame indexed by sample name, or a DataArray with a
    ``sample`` coordinate, is put in the order of ``scores["sample"]`` (a shuffled or
    sorted Series would otherwise be paired with the wrong images by position).  A
    default ``RangeIndex`` or an index that names none of the samples, a list or an
    array is paired by position.  A sample of ``scores`` that ``values`` lacks raises
    :class:`DataError` naming it.  A 1-D DataArray or a Series comes back as an array,
    a DataFrame or a DataArray of more dims as the same type.

    Examples
    --------
    >>> import pandas as pd, xarray as xr
    >>> s = xr.DataArray([[1.0], [2.0]], dims=("sample", "concept"),
    ...                  coords={"sample": ["a", "b"], "concept": ["c"]})
    >>> list(sample_values(s, pd.Series(["x", "y"], index=["b", "a"])))
    ['y', 'x']
    """
    if not isinstance(scores, xr.DataArray | xr.Dataset) or "sample" not in scores.coords:
        return values
    samples = pd.Index(np.asarray(scores["sample"].values))
    if isinstance(values, xr.DataArray):
        if "sample" not in values.coords:
            return values.values if values.ndim == 1 else values
        have = pd.Index(np.asarray(values["sample"].values))
        if not samples.isin(have).any():  # sample names unrelated to the scores
            return values.values if values.ndim == 1 else values
        _check(have, samples, name)
        if values.ndim == 1:  # by position: xarray cannot index pandas' Arrow-string coords
            return np.asarray(values.values)[have.get_indexer(samples)]
        out = values if have.equals(samples) else values.isel(sample=have.get_indexer(samples))
        return out
    if not isinstance(values, pd.Series | pd.DataFrame):
        return values
    if isinstance(values.index, pd.RangeIndex) or not samples.isin(values.index).any():
        return values.values if isinstance(values, pd.Series) else values
    _check(values.index, samples, name)
    out = values.reindex(samples)
    return out.values if isinstance(out, pd.Series) else out
