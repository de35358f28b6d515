"""Label validation and encoding shared by every loader."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from conceptlens.exceptions import DataError

__all__ = ["encode_multi", "encode_single"]


def _is_numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series)) and not pd.api.types.is_bool_dtype(series)


def encode_single(
    series: pd.Series, classes: Sequence[str] | None
) -> tuple[np.ndarray, list[str], dict[int, str]]:
    """Encode one label column as class indices.

    String labels are matched to ``classes`` by name; integer labels are indices into
    ``classes`` when it is given. Without ``classes``, the sorted distinct values become
    the classes (numbers sorted numerically).

    Returns
    -------
    codes : np.ndarray
        ``int64`` (N,), ``-1`` where the row is bad.
    classes : list of str
    bad : dict
        Position -> reason, for NaN or unknown labels.
    """
    column = series.name
    values = series.to_numpy(dtype=object)
    missing = np.asarray(pd.isna(series), dtype=bool)
    bad: dict[int, str] = {}
    for pos in np.flatnonzero(missing):
        bad[int(pos)] = (
            f"label column {column!r} is empty (NaN); fill it or drop the row "
            "(or pass on_error='skip' to skip unlabelled rows)"
        )
    codes = np.full(len(values), -1, dtype=np.int64)
    numeric = _is_numeric(series)
    present = values[~missing]
    if numeric:
        as_float = np.asarray(present, dtype=np.float64)
        non_int = ~np.isclose(as_float, np.round(as_float))
        if non_int.any():
            for pos in np.flatnonzero(~missing)[non_int]:
                bad[int(pos)] = (
                    f"label column {column!r} holds {values[pos]!r}, not a class index; "
                    "single labels must be integers or class names"
                )
    if classes is None:
        if numeric:
            uniq = sorted({round(float(v)) for i, v in enumerate(values) if i not in bad})
            class_list = [str(v) for v in uniq]
            lookup: dict[object, int] = {v: k for k, v in enumerate(uniq)}
            for i, v in enumerate(values):
                if i not in bad:
                    codes[i] = lookup[round(float(v))]
        else:
            class_list = sorted({str(v) for i, v in enumerate(values) if i not in bad})
            name_lookup = {c: k for k, c in enumerate(class_list)}
            for i, v in enumerate(values):
                if i not in bad:
                    codes[i] = name_lookup[str(v)]
        return codes, class_list, bad
    class_list = [str(c) for c in classes]
    if len(set(class_list)) != len(class_list):
        raise DataError(f"classes has duplicate names: {class_list}; give each class once.")
    name_lookup = {c: k for k, c in enumerate(class_list)}
    for i, v in enumerate(values):
        if i in bad:
            continue
        if numeric:
            k = round(float(v))
            if 0 <= k < len(class_list):
                codes[i] = k
            else:
                bad[i] = (
                    f"label {k} in column {column!r} is not a valid index for "
                    f"{len(class_list)} classes {class_list}; correct the row or the classes"
                )
        elif str(v) in name_lookup:
            codes[i] = name_lookup[str(v)]
        else:
            bad[i] = (
                f"unknown label {v!r} in column {column!r}; known classes: {class_list}. "
                "Correct the row or add the class to classes="
            )
    return codes, class_list, bad


def encode_multi(
    frame: pd.DataFrame, columns: Sequence[str], *, allow_missing: bool = False
) -> tuple[np.ndarray, dict[int, str]]:
    """Encode multi-label 0/1 columns as a ``float32`` ``(N, L)`` matrix.

    NaN is kept (as NaN, meaning "unknown") only with ``allow_missing``; otherwise the
    row is bad. Any value other than 0/1 (or True/False) makes the row bad.
    """
    out = np.zeros((len(frame), len(columns)), dtype=np.float32)
    bad: dict[int, str] = {}
    for j, col in enumerate(columns):
        s = frame[col]
        if pd.api.types.is_bool_dtype(s):
            vals = s.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            vals = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            unparsable = np.asarray(s.notna(), dtype=bool) & np.isnan(vals)
            for pos in np.flatnonzero(unparsable):
                bad.setdefault(
                    int(pos),
                    f"multi-label column {col!r} holds {s.iloc[pos]!r}; use 0 or 1",
                )
        nan = np.isnan(vals)
        if not allow_missing:
            for pos in np.flatnonzero(nan):
                bad.setdefault(
                    int(pos),
                    f"label column {col!r} is empty (NaN); fill it with 0/1, drop the row, "
                    "or pass on_error='skip'",
                )
        other = ~nan & ~np.isin(vals, (0.0, 1.0))
        for pos in np.flatnonzero(other):
            bad.setdefault(
                int(pos),
                f"multi-label column {col!r} holds {vals[pos]:g}; multi-label columns take "
                "0 or 1 (map uncertain values first, e.g. the CheXpert policy)",
            )
        out[:, j] = vals
    return out, bad
