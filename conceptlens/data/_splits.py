"""Seeded dataset splits: random, stratified, grouped by patient, held-out site.

A split is a plain ``{split_name: [sample ids]}`` mapping, saved as a small JSON (or
CSV ``id,split``) file so that every later run uses the same partition.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from conceptlens._io import atomic_write_text, read_json, user_path
from conceptlens.exceptions import ConfigError, DataError, MissingFileError

__all__ = ["load_splits", "make_splits", "save_splits", "stratified_split"]

Strategy = Literal["random", "stratified", "group", "site"]
_DEFAULT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _allocate(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder allocation of ``n`` items to fractions (sums exactly to ``n``)."""
    names = list(fractions)
    raw = np.array([fractions[k] for k in names], dtype=float) * n
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    for j in order[: n - counts.sum()]:
        counts[j] += 1
    return dict(zip(names, counts.tolist(), strict=True))


def _check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    fr = {str(k): float(v) for k, v in fractions.items()}
    if not fr or any(v < 0 for v in fr.values()) or not np.isclose(sum(fr.values()), 1.0):
        raise ConfigError(
            f"fractions must be non-negative and sum to 1, got {fr}; e.g. "
            "{'train': 0.7, 'val': 0.15, 'test': 0.15}."
        )
    return fr


def _frame(data: Any) -> pd.DataFrame:
    meta = getattr(data, "metadata", data)
    if not isinstance(meta, pd.DataFrame):
        raise ConfigError("make_splits needs an ImageDataset or a metadata DataFrame.")
    return meta


def _column(meta: pd.DataFrame, name: str, role: str) -> np.ndarray:
    if name not in meta.columns:
        raise DataError(
            f"{role} column {name!r} not found; columns are {list(meta.columns)}. "
            f"Pass {role}_column= naming it."
        )
    col = meta[name]
    if col.isna().any():
        n = int(col.isna().sum())
        raise DataError(
            f"{role} column {name!r} has {n} empty values; fill them (e.g. "
            f"metadata[{name!r}].fillna('unknown')) before splitting."
        )
    return col.astype(str).to_numpy()


def _group_values(meta: pd.DataFrame, name: str, ids: np.ndarray) -> np.ndarray:
    """The group column as strings; an empty cell makes the sample a group of its own."""
    if name not in meta.columns:
        raise DataError(
            f"group column {name!r} not found; columns are {list(meta.columns)}. "
            "Pass group_column= naming the patient or lesion column."
        )
    col = meta[name]
    values = col.astype(str).to_numpy(dtype=object)
    empty = col.isna().to_numpy()
    # "\0" cannot appear in a real id read from a table, so these never merge with one
    values[empty] = ["\0" + str(i) for i in ids[empty]]
    return values


def _check_not_empty(
    parts: Mapping[str, Sequence[int]], fractions: Mapping[str, float], n_groups: int, col: str
) -> None:
    empty = [k for k, v in parts.items() if fractions.get(k, 0) > 0 and len(v) == 0]
    if empty:
        raise DataError(
            f"split(s) {empty} would be empty: the {n_groups} distinct {col!r} value(s) cannot "
            f"fill {sum(1 for v in fractions.values() if v > 0)} splits with fractions "
            f"{dict(fractions)}; use fewer splits, give them larger fractions, or more data."
        )


def _stratified(
    keys: np.ndarray, strata: np.ndarray | None, fractions: dict[str, float], rng: Any
) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {k: [] for k in fractions}
    groups = (
        [np.arange(len(keys))]
        if strata is None
        else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    )
    for members in groups:
        perm = members[rng.permutation(len(members))]
        start = 0
        for name, count in _allocate(len(perm), fractions).items():
            out[name].extend(perm[start : start + count].tolist())
            start += count
    return out


def stratified_split(
    labels: Any,
    test_fraction: float,
    *,
    seed: int = 0,
    indices: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified two-way split of positions: ``(train, test)``, each sorted.

    The test part holds about ``test_fraction`` of every class, drawn as scikit-learn's
    ``train_test_split(indices, test_size=test_fraction, stratify=labels[indices],
    random_state=seed)`` draws it (the same positions for the same inputs).

    Parameters
    ----------
    labels : array-like, shape (n,)
        Class of every sample.
    test_fraction : float
        In (0, 1).
    seed : int, default 0
    indices : array of int, optional
        Split only these positions (default: all).

    Returns
    -------
    train, test : numpy.ndarray of int
        Sorted positions into ``labels``.

    Raises
    ------
    ConfigError
        ``test_fraction`` outside (0, 1).
    DataError
        A class too small to appear on both sides (the message names it).

    Examples
    --------
    >>> train, test = stratified_split(["a"] * 6 + ["b"] * 4, 0.5, seed=0)
    >>> len(train), len(test), int((test >= 6).sum())  # half of each class in test
    (5, 5, 2)
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    y = np.asarray(labels)
    idx = np.arange(len(y)) if indices is None else np.asarray(indices, dtype=np.int64)
    values, counts = np.unique(y[idx], return_counts=True)
    small = [str(v) for v, c in zip(values, counts, strict=True) if c < 2]
    if small:
        raise DataError(
            f"class(es) {small} have fewer than 2 samples, so a stratified split cannot put "
            "them on both sides; add samples or merge the class."
        )
    try:
        train, test = train_test_split(
            idx, test_size=float(test_fraction), stratify=y[idx], random_state=seed
        )
    except ValueError as exc:
        raise DataError(f"stratified split of {len(idx)} samples failed: {exc}") from None
    return np.sort(train), np.sort(test)


def _grouped(
    groups: np.ndarray, strata: np.ndarray | None, fractions: dict[str, float], rng: Any
) -> dict[str, list[int]]:
    """Assign whole groups to splits, greedily filling the split furthest below target.

    With ``strata``, groups are dealt per dominant stratum so each split gets a share of
    every class; no group ever lands in two splits.
    """
    uniq, inverse = np.unique(groups, return_inverse=True)
    sizes = np.bincount(inverse)
    if strata is not None:
        # each group's most frequent stratum; ties go to the smallest (sorted-first) value
        s_uniq, s_inv = np.unique(strata, return_inverse=True)
        counts = np.zeros((len(uniq), len(s_uniq)), dtype=np.int64)
        np.add.at(counts, (inverse, s_inv), 1)
        dominant = s_uniq[counts.argmax(axis=1)]
        buckets = [np.flatnonzero(dominant == s) for s in np.unique(dominant.astype(str))]
    else:
        buckets = [np.arange(len(uniq))]
    names = list(fractions)
    target = np.array([fractions[k] for k in names])
    assigned = np.full(len(uniq), -1)
    filled_all = np.zeros(len(names))
    for bucket in buckets:
        order = bucket[rng.permutation(len(bucket))]
        order = order[np.argsort(-sizes[order], kind="stable")]
        filled = np.zeros(len(names))
        total = sizes[bucket].sum()
        for g in order:
            deficit = target * total - filled
            overall = target * len(groups) - filled_all
            # most-behind split within this stratum; ties go to the most-behind overall
            j = int(np.lexsort((-overall, -deficit))[0])
            assigned[g] = j
            filled[j] += sizes[g]
            filled_all[j] += sizes[g]
    return {name: np.flatnonzero(assigned[inverse] == j).tolist() for j, name in enumerate(names)}


def make_splits(
    data: Any,
    *,
    strategy: Strategy | None = None,
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    stratify_column: str | None = None,
    group_column: str = "patient_id",
    site_column: str = "site",
    heldout_sites: str | Sequence[str] | None = None,
    heldout_name: str = "test",
) -> dict[str, list[str]]:
    """Split sample ids into named parts, reproducibly.

    Parameters
    ----------
    data : ImageDataset or pandas.DataFrame
        The dataset (or its metadata, index = sample id).
    strategy : {"random", "stratified", "group", "site"}, optional
        Default: ``"group"`` when the data has ``group_column`` (the HAM10000, ISIC,
        NIH ChestX-ray14 and CheXpert adapters set ``patient_id``), else
        ``"stratified"``, so images of one patient or lesion never straddle splits.
        ``"stratified"``: each class split by ``fractions``. ``"group"``: every
        ``group_column`` value (patient, lesion) in exactly one split, stratified by
        its dominant class (ties go to the value that sorts first); a sample with an
        empty group cell is a group of its own. A grouped split that would leave a split
        with a positive fraction empty raises :class:`DataError` naming it. ``"site"``: the
        ``heldout_sites`` form the ``heldout_name``
        split (domain shift); the other sites are split by ``fractions`` (grouped
        when ``group_column`` exists, else stratified).
    fractions : dict of str to float, optional
        Split name -> fraction (sum 1). Default 0.7/0.15/0.15 train/val/test, or
        0.85/0.15 train/val for the remaining sites with ``strategy="site"``.
    seed : int
        Same seed and data -> same split.
    stratify_column : str, optional
        Column to stratify by; default the dataset's single label column (none for
        multi-label data).
    group_column, site_column : str
        Patient/group and site columns.
    heldout_sites : str or list of str
        Sites held out with ``strategy="site"`` (required there).
    heldout_name : str
        Name of the held-out split.

    Returns
    -------
    dict of str to list of str
        Split name -> ids in dataset order; the parts are disjoint and cover the data.

    Examples
    --------
    >>> import pandas as pd
    >>> meta = pd.DataFrame({"label": list("aabbaabbaa"), "patient_id": list("0011223344")},
    ...                     index=[f"s{i}" for i in range(10)])
    >>> parts = make_splits(meta, strategy="group", fractions={"train": 0.6, "test": 0.4})
    >>> sorted(len(v) for v in parts.values())
    [4, 6]
    """
    meta = _frame(data)
    if len(meta) == 0:
        raise DataError("cannot split an empty dataset.")
    ids = np.array([str(i) for i in meta.index], dtype=object)
    if len(set(ids)) != len(ids):
        raise DataError("sample ids are not unique; splits are lists of ids.")
    if stratify_column is None:
        stratify_column = getattr(data, "label_column", None)
        if stratify_column is None and "label" in meta.columns:
            stratify_column = "label"
    strata = _column(meta, stratify_column, "stratify") if stratify_column else None
    rng = np.random.default_rng(seed)
    if strategy is None:
        strategy = "group" if group_column in meta.columns else "stratified"
    if strategy == "site":
        if heldout_sites is None:
            raise ConfigError("strategy='site' needs heldout_sites=, e.g. ['site_c'].")
        held = [heldout_sites] if isinstance(heldout_sites, str) else list(heldout_sites)
        sites = _column(meta, site_column, "site")
        unknown = sorted(set(held) - set(sites))
        if unknown:
            raise DataError(
                f"held-out sites {unknown} not in column {site_column!r}: {sorted(set(sites))}."
            )
        out_mask = np.isin(sites, held)
        if out_mask.all():
            raise DataError("every sample is in a held-out site; nothing is left to train on.")
        fr = _check_fractions(fractions or {"train": 0.85, "val": 0.15})
        if heldout_name in fr:
            raise ConfigError(f"split name {heldout_name!r} is used for the held-out sites.")
        rest = np.flatnonzero(~out_mask)
        sub_strata = strata[rest] if strata is not None else None
        if group_column in meta.columns:
            groups = _group_values(meta, group_column, ids)[rest]
            parts = _grouped(groups, sub_strata, fr, rng)
            _check_not_empty(parts, fr, len(set(groups)), group_column)
        else:
            parts = _stratified(ids[rest], sub_strata, fr, rng)
        result = {k: rest[v].tolist() for k, v in parts.items()}
        result[heldout_name] = np.flatnonzero(out_mask).tolist()
    else:
        fr = _check_fractions(fractions or _DEFAULT_FRACTIONS)
        if strategy == "random":
            result = _stratified(ids, None, fr, rng)
        elif strategy == "stratified":
            result = _stratified(ids, strata, fr, rng)
        elif strategy == "group":
            groups = _group_values(meta, group_column, ids)
            result = _grouped(groups, strata, fr, rng)
            _check_not_empty(result, fr, len(set(groups)), group_column)
        else:
            raise ConfigError(
                f"unknown split strategy {strategy!r}; use 'random', 'stratified', "
                "'group' or 'site'."
            )
    return {k: ids[np.sort(np.asarray(v, dtype=int))].tolist() for k, v in result.items()}


def save_splits(
    splits: Mapping[str, Sequence[str]],
    path: str | os.PathLike[str],
    *,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write splits atomically as JSON (``.json``) or CSV ``id,split`` (``.csv``).

    ``info`` (strategy, seed, ...) is stored alongside in the JSON form.
    """
    _check_disjoint(splits, "splits")
    p = user_path(path)
    if p.suffix.lower() == ".csv":
        rows = [(i, k) for k, v in splits.items() for i in v]
        frame = pd.DataFrame(rows, columns=["id", "split"])
        atomic_write_text(p, frame.to_csv(index=False))
    else:
        doc = {
            "schema_version": 1,
            "info": dict(info or {}),
            "splits": {k: [str(i) for i in v] for k, v in splits.items()},
        }
        atomic_write_text(p, json.dumps(doc, indent=1) + "\n")
    return p


def load_splits(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read splits written by :func:`save_splits` (JSON or CSV ``id,split``)."""
    p = user_path(path)
    if not p.exists():
        raise MissingFileError(f"split file not found: {p}")
    if p.suffix.lower() == ".csv":
        frame = pd.read_csv(p, dtype=str)
        if list(frame.columns[:2]) != ["id", "split"]:
            raise DataError(f"{p}: split CSV needs columns id,split; found {list(frame.columns)}.")
        splits: dict[str, list[str]] = {}
        for i, k in zip(frame["id"], frame["split"], strict=True):
            splits.setdefault(str(k), []).append(str(i))
    else:
        doc = read_json(p, what="conceptlens split file", fix="write one with save_splits().")
        try:
            splits = {str(k): [str(i) for i in v] for k, v in doc["splits"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(
                f"{p}: not a conceptlens split file ({exc}); write one with save_splits()."
            ) from exc
    _check_disjoint(splits, str(p))
    return splits


def _check_disjoint(splits: Mapping[str, Sequence[str]], source: str) -> None:
    seen: dict[str, str] = {}
    for name, ids in splits.items():
        for i in ids:
            if i in seen and seen[i] != name:
                raise DataError(
                    f"{source}: id {i!r} is in both {seen[i]!r} and {name!r}; splits must be "
                    "disjoint."
                )
            seen[str(i)] = name
