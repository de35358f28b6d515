"""``audit``: models x splits x groups -> one labelled ``xr.Dataset`` of metrics with CIs."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from conceptlens._samples import sample_values
from conceptlens.exceptions import ConfigError, DataError, UnknownNameError
from conceptlens.heads._kernels import bootstrap_indices
from conceptlens.studies import _kernels
from conceptlens.studies._delong import delong_test

__all__ = ["AUDIT_METRICS", "CLASS_METRICS", "audit", "load_audit", "save_audit"]

AUDIT_METRICS = ("accuracy", "balanced_accuracy", "auroc", "ece")
CLASS_METRICS = ("sensitivity", "specificity", "auroc")
STATS = ("estimate", "ci_low", "ci_high")
DELONG_STATS = ("auroc_a", "auroc_b", "difference", "se", "z", "p_value")
#: Group value of the samples whose group column is NaN, None or empty.
MISSING_GROUP = "<missing>"
_PROVENANCE_KEYS = (
    "backbone",
    "backbone_fingerprint",
    "bank_id",
    "bank_version",
    "bank_fingerprint",
    "template_hash",
    "score_mode",
)


# -- metadata -----------------------------------------------------------------------
def metadata_table(source: Any) -> pd.DataFrame:
    """Per-sample metadata as a DataFrame: the 1-D ``sample`` coordinates of an xarray
    object, or a DataFrame as it is."""
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True)
    if isinstance(source, xr.DataArray | xr.Dataset):
        cols = {
            str(name): np.asarray(c.values)
            for name, c in source.coords.items()
            if c.dims == ("sample",) and name != "sample"
        }
        if "sample" in source.coords:
            cols["sample"] = np.asarray(source["sample"].values)
        return pd.DataFrame(cols)
    raise DataError(
        "metadata must be a pandas DataFrame or an xarray object with sample coordinates "
        f"(concept scores), got {type(source).__name__}."
    )


def metadata_column(meta: pd.DataFrame, name: str, what: str = "column") -> np.ndarray:
    """One metadata column; an unknown name raises and lists the available ones."""
    if name not in meta.columns:
        raise UnknownNameError(
            f"unknown metadata {what} {name!r}; available columns: "
            f"{sorted(map(str, meta.columns))}."
        )
    return np.asarray(meta[name].values)


# -- model outputs --------------------------------------------------------------------
def _predict(name: str, model: Any, x: Any, classes: Any) -> tuple[np.ndarray, list[str]]:
    if hasattr(model, "predict_proba"):
        if x is None:
            raise ConfigError(
                f"model {name!r} needs an input: pass `scores` or inputs={{{name!r}: X}}."
            )
        proba = np.asarray(model.predict_proba(x), dtype=float)
        cls = [str(c) for c in model.classes_]
    elif isinstance(model, xr.DataArray) and "class" in model.dims:
        model = sample_values(x, model, name=f"the probabilities of model {name!r}")
        proba = np.asarray(model.transpose("sample", "class").values, dtype=float)
        cls = [str(c) for c in model["class"].values]
    else:
        proba = np.asarray(model, dtype=float)
        if classes is None:
            raise ConfigError(
                f"model {name!r} is given as an array of probabilities; pass `classes` "
                "(the class of each column)."
            )
        cls = [str(c) for c in classes]
    if proba.ndim != 2 or proba.shape[1] != len(cls):
        raise DataError(
            f"model {name!r}: probabilities have shape {proba.shape}, expected "
            f"(n_samples, {len(cls)}) for classes {cls}."
        )
    if not np.all(np.isfinite(proba)):
        raise DataError(f"model {name!r}: {int((~np.isfinite(proba)).sum())} non-finite values.")
    return proba, cls


def model_probabilities(
    models: Mapping[str, Any],
    scores: Any = None,
    inputs: Mapping[str, Any] | None = None,
    classes: Any = None,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Class probabilities of each model on its input, all models on the same classes."""
    if not models:
        raise ConfigError("pass at least one model: models={'name': fitted_model or proba}.")
    inputs = dict(inputs or {})
    unknown = sorted(set(inputs) - set(models))
    if unknown:
        raise UnknownNameError(f"inputs {unknown} name no model; models are {list(models)}.")
    out: dict[str, np.ndarray] = {}
    ref: list[str] | None = None
    for name, model in models.items():
        proba, cls = _predict(str(name), model, inputs.get(name, scores), classes)
        if ref is None:
            ref = cls
        elif cls != ref:
            raise DataError(
                f"model {name!r} predicts classes {cls}, the first model {ref}; audit models "
                "trained on the same classes."
            )
        out[str(name)] = proba
    lengths = {k: v.shape[0] for k, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"models give predictions for different numbers of cases: {lengths}.")
    return out, list(ref or [])


# -- splits and groups ----------------------------------------------------------------
def _splits(split: Any, meta: pd.DataFrame, n: int) -> dict[str, np.ndarray]:
    if split is None:
        return {"all": np.arange(n)}
    if isinstance(split, str):
        values = metadata_column(meta, split, "split column").astype(str)
        return {v: np.flatnonzero(values == v) for v in sorted(set(values.tolist()))}
    if isinstance(split, Mapping):
        out = {}
        for name, sel in split.items():
            arr = np.asarray(sel)
            if arr.dtype == bool:
                if arr.shape != (n,):
                    raise DataError(
                        f"split {name!r}: boolean mask of shape {arr.shape}, not ({n},)."
                    )
                arr = np.flatnonzero(arr)
            arr = arr.astype(np.int64)
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                raise DataError(f"split {name!r}: positions outside 0..{n - 1}.")
            out[str(name)] = arr
        return out
    raise ConfigError(
        "split must be a metadata column name, a mapping name -> positions/boolean mask, "
        f"or None; got {type(split).__name__}."
    )


def _group_slots(groups: Sequence[str], meta: pd.DataFrame, n: int):
    """Slot table (n, S), slot labels, the column and value of each slot."""
    labels, cols, vals = ["all"], [""], [""]
    slots = np.zeros((n, len(groups)), dtype=np.int64)
    for j, col in enumerate(groups):
        raw = pd.Series(np.asarray(metadata_column(meta, col, "group column"), dtype=object))
        text = raw.astype(str)
        # NaN, None and empty cells are one group with a name that says so (they read as
        # "tone=nan" and "site=" before, next to real groups)
        missing = raw.isna() | (text.str.strip() == "")
        values = text.where(~missing, MISSING_GROUP).to_numpy(dtype=str)
        uniq, inv = np.unique(values, return_inverse=True)
        slots[:, j] = len(labels) + inv
        for u in uniq:
            labels.append(f"{col}={u}")
            cols.append(col)
            vals.append(str(u))
    return slots, labels, cols, vals


def _quantiles(reps: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1.0 - ci) / 2.0
    if reps.shape[0] == 0:
        nan = np.full(reps.shape[1:], np.nan)
        return nan, nan.copy()
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo = np.nanquantile(reps, alpha, axis=0)
            hi = np.nanquantile(reps, 1.0 - alpha, axis=0)
    return lo, hi


def _with_stats(point: np.ndarray, reps: np.ndarray, ci: float) -> np.ndarray:
    lo, hi = _quantiles(reps, ci)
    return np.stack([point, lo, hi], axis=-1)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from conceptlens._version import __version__

    out = {"version_conceptlens": __version__}
    for pkg in ("numpy", "xarray", "numba", "scikit-learn", "pandas"):
        try:
            out[f"version_{pkg}"] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover
            out[f"version_{pkg}"] = "unknown"
    return out


def provenance(*sources: Any) -> dict[str, str]:
    """Backbone/bank fingerprints from the attrs of scores (and other inputs)."""
    out: dict[str, str] = {}
    for src in sources:
        attrs = getattr(src, "attrs", None) or {}
        for key in _PROVENANCE_KEYS:
            if key in attrs and key not in out:
                out[key] = str(attrs[key])
    return out


# -- the audit ------------------------------------------------------------------------
def audit(
    models: Mapping[str, Any],
    scores: Any = None,
    *,
    inputs: Mapping[str, Any] | None = None,
    labels: Any = "label",
    metadata: Any = None,
    split: Any = "site",
    groups: Sequence[str] | str = (),
    reference: str | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    classes: Any = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    min_cases: int = 10,
    n_bins: int = 15,
) -> xr.Dataset:
    """Audit models across splits and groups, with stratified bootstrap intervals.

    Parameters
    ----------
    models : mapping name -> fitted model or probabilities
        A fitted classifier (``predict_proba``, ``classes_``), applied to ``scores`` or
        to ``inputs[name]``; or its class probabilities, an ``xr.DataArray`` with dims
        ``("sample", "class")`` or an array (n_samples, n_classes) with ``classes``.
    scores : xr.DataArray, optional
        Concept scores ``("sample", "concept")``: the default input of the models, the
        default source of metadata (its sample coordinates) and of provenance (attrs).
    inputs : mapping name -> array, optional
        Per-model inputs, e.g. ``{"linear_probe": embeddings}``.
    labels : str or array (n_samples,), default="label"
        A metadata column or the true class of each case.
    metadata : DataFrame or xarray object, optional
        Per-sample metadata (default: the sample coordinates of ``scores``).
    split : str, mapping or None, default="site"
        A metadata column (one split per value), a mapping ``name -> positions`` (or a
        boolean mask), or ``None`` for one split of all cases.
    groups : str or sequence of str
        Metadata columns to break every split down by (skin tone, sex, age band...).
        Each value is a group; ``worst:<column>`` is the worst group per metric.
    reference : str, optional
        The in-domain split; ``gap`` is ``reference - split`` for every split.
        Default: ``"in_domain"`` when there is such a split, else the first one.
    pairs : sequence of (model_a, model_b), optional
        Paired comparisons on the same cases (default: every pair of models).
    classes : sequence, optional
        Column classes of probability arrays.
    n_boot : int, default=1000
        Bootstrap replicates (0: point estimates only, CI bounds nan).
    ci : float, default=0.95
        Central percentile interval.
    seed : int, default=0
        Seed of the resampling; each split uses ``seed + its position``.
    min_cases : int, default=10
        Groups with fewer cases get nan metrics (reason in ``reason``).
    n_bins : int, default=15
        Equal-width confidence bins of the ECE.

    Returns
    -------
    xr.Dataset
        ``metrics`` (model, split, group, metric, stat) with metric accuracy,
        balanced_accuracy, auroc (macro one-vs-rest; for two classes the second class's)
        and ece, stat estimate / ci_low / ci_high; ``class_metrics`` (model, split,
        group, class, class_metric, stat) with sensitivity, specificity and AUROC per
        class; ``gap`` (model, split, group, metric, stat): reference minus split;
        ``paired`` (pair, split, group, metric, stat): model a minus model b on the
        same bootstrap resamples, with ``paired_p_value``; ``delong`` (pair, split,
        group, class, delong_stat); ``n_cases``, ``n_class_cases`` and ``reason``
        (empty where a metric is defined); ``worst_group`` (model, split, group,
        metric): at the ``worst:<column>`` entries, the group that is worst on the
        point estimate; the ``worst:<column>`` metrics are that group's estimate and
        interval (the interval does not account for which group came out worst).
        Resampling is stratified by true class (and by group when one group column is
        given).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.studies import audit
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200)
    >>> p = np.clip(y * 0.6 + rng.uniform(0, 0.4, 200), 0, 1)
    >>> proba = xr.DataArray(np.column_stack([1 - p, p]), dims=("sample", "class"),
    ...                      coords={"class": ["benign", "malignant"]})
    >>> meta = {"label": np.array(["benign", "malignant"])[y],
    ...         "site": np.where(np.arange(200) < 100, "a", "b")}
    >>> import pandas as pd
    >>> ds = audit({"model": proba}, metadata=pd.DataFrame(meta), n_boot=100)
    >>> float(ds.metrics.sel(model="model", split="a", group="all", metric="auroc",
    ...                      stat="estimate"))
    1.0
    """
    if int(n_boot) < 0:
        raise ConfigError(f"n_boot must be >= 0, got {n_boot}.")
    if not 0.0 < float(ci) < 1.0:
        raise ConfigError(f"ci must be in (0, 1), got {ci}.")
    if int(min_cases) < 1:
        raise ConfigError(f"min_cases must be >= 1, got {min_cases}.")
    if isinstance(groups, str):
        groups = [groups]
    groups = [str(g) for g in groups]
    probas, cls = model_probabilities(models, scores, inputs, classes)
    n = next(iter(probas.values())).shape[0]
    # the cases are in the order of the scores: metadata and labels indexed by sample name
    # are put in that order (paired by position they would silently mislabel cases)
    order = scores if scores is not None else metadata
    if metadata is not None:
        metadata = sample_values(order, metadata, name="metadata")
    meta_src = metadata if metadata is not None else scores
    meta = metadata_table(meta_src) if meta_src is not None else pd.DataFrame(index=range(n))
    if len(meta) != n:
        raise DataError(f"metadata has {len(meta)} rows but the models predict {n} cases.")
    y = (
        metadata_column(meta, labels, "label column")
        if isinstance(labels, str)
        else np.asarray(sample_values(order, labels))
    )
    if y.shape != (n,):
        raise DataError(f"labels have shape {y.shape}, expected ({n},).")
    lookup = {c: i for i, c in enumerate(cls)}
    ystr = y.astype(str)
    bad = sorted(set(ystr.tolist()) - set(lookup))
    if bad:
        raise DataError(
            f"labels {bad[:5]} are not classes of the models {cls}; check the label column."
        )
    codes = np.array([lookup[v] for v in ystr.tolist()], dtype=np.int64)
    splits = _splits(split, meta, n)
    split_names = list(splits)
    if reference is None:
        reference = "in_domain" if "in_domain" in splits else split_names[0]
    elif reference not in splits:
        raise UnknownNameError(f"reference split {reference!r} is not one of {split_names}.")
    model_names = list(probas)
    if pairs is None:
        pairs = list(itertools.combinations(model_names, 2))
    for a, b in pairs:
        for m in (a, b):
            if m not in probas:
                raise UnknownNameError(
                    f"pair ({a!r}, {b!r}): no model {m!r}; models are {model_names}."
                )
    slots_all, glabels, gcols, gvals = _group_slots(groups, meta, n)
    n_slots = len(glabels)
    worst_cols = list(groups)
    k = len(cls)
    nm, ns, ng = len(model_names), len(split_names), n_slots + len(worst_cols)
    R = int(n_boot)
    metrics = np.full((nm, ns, ng, len(AUDIT_METRICS), 3), np.nan)
    cmetrics = np.full((nm, ns, ng, k, len(CLASS_METRICS), 3), np.nan)
    gap = np.full_like(metrics, np.nan)
    paired = np.full((len(pairs), ns, ng, len(AUDIT_METRICS), 3), np.nan)
    paired_p = np.full((len(pairs), ns, ng, len(AUDIT_METRICS)), np.nan)
    delong = np.full((len(pairs), ns, ng, k, len(DELONG_STATS)), np.nan)
    n_cases = np.zeros((ns, ng), dtype=np.int64)
    n_class = np.zeros((ns, ng, k), dtype=np.int64)
    reason = np.full((ns, ng, len(AUDIT_METRICS)), "", dtype=object)
    worst_of = np.full((nm, ns, ng, len(AUDIT_METRICS)), "", dtype=object)
    main_reps: dict[tuple[int, int], np.ndarray] = {}
    for si, sname in enumerate(split_names):
        rows = splits[sname]
        sl = slots_all[rows]
        cd = codes[rows]
        # stratify by class, and by the group when there is exactly one group column
        strata = cd if len(groups) != 1 else (sl[:, 0] - 1) * k + cd
        strata_codes = np.unique(strata, return_inverse=True)[1].astype(np.int64)
        if R > 0 and len(rows):
            idx = bootstrap_indices(strata_codes, int(strata_codes.max()) + 1, R, int(seed) + si)
        else:
            idx = np.zeros((0, len(rows)), dtype=np.int64)
        W = _kernels.index_counts(idx, len(rows))
        valid = np.ones(n_slots, dtype=bool)
        for g in range(n_slots):
            members = np.ones(len(rows), bool) if g == 0 else (sl == g).any(axis=1)
            n_cases[si, g] = int(members.sum())
            n_class[si, g] = np.bincount(cd[members], minlength=k)
            present = [cls[c] for c in range(k) if n_class[si, g, c] > 0]
            if n_cases[si, g] < min_cases:
                valid[g] = False
                reason[si, g, :] = f"fewer than {min_cases} cases (n={n_cases[si, g]})"
            elif len(present) < 2:
                what = f"only class {present}" if present else "no cases"
                reason[si, g, 1] = reason[si, g, 2] = f"{what} present"
        model_out = {}
        for mi, mname in enumerate(model_names):
            proba = probas[mname][rows]
            pred = proba.argmax(axis=1).astype(np.int64)
            conf = proba.max(axis=1)
            order = np.argsort(proba, axis=0, kind="mergesort").T.copy()
            main, per = _kernels.weighted_metrics(
                W, cd, pred, conf, proba, order, sl, n_slots, int(n_bins)
            )
            main[:, ~valid] = np.nan
            per[:, ~valid] = np.nan
            for g in range(n_slots):
                for j in (1, 2):
                    if reason[si, g, j]:
                        main[:, g, j] = np.nan
            # worst group per column: the group worst on the point estimate, with that
            # group's own bootstrap replicates (so its interval is the named group's; the
            # minimum over groups per replicate would be biased low)
            worst = np.full((main.shape[0], len(worst_cols), main.shape[2]), np.nan)
            for wi, col in enumerate(worst_cols):
                members = [g for g in range(n_slots) if gcols[g] == col]
                block = main[:, members]
                for j in range(block.shape[2]):
                    col_vals = block[0, :, j]
                    if np.isfinite(col_vals).any():
                        # ECE: worst is the largest; the rest the smallest
                        pick = np.nanargmax(col_vals) if j == 3 else np.nanargmin(col_vals)
                        worst_of[mi, si, n_slots + wi, j] = glabels[members[pick]]
                        worst[:, wi, j] = block[:, pick, j]
            full = np.concatenate([main, worst], axis=1)
            model_out[mname] = full
            main_reps[(mi, si)] = full
            metrics[mi, si] = _with_stats(full[0], full[1:], ci)
            cmetrics[mi, si, :n_slots] = _with_stats(per[0], per[1:], ci)
        for pi, (a, b) in enumerate(pairs):
            diff = model_out[a] - model_out[b]
            paired[pi, si] = _with_stats(diff[0], diff[1:], ci)
            if R > 0:
                d = diff[1:]
                with np.errstate(invalid="ignore"):
                    ok = ~np.isnan(d)
                    cnt = ok.sum(axis=0)
                    le = np.where(ok, d <= 0, False).sum(axis=0)
                    ge = np.where(ok, d >= 0, False).sum(axis=0)
                    p = np.minimum(1.0, 2.0 * np.minimum(le, ge) / np.maximum(cnt, 1))
                paired_p[pi, si] = np.where(cnt > 0, p, np.nan)
            pa, pb = probas[a][rows], probas[b][rows]
            for g in range(n_slots):
                if not valid[g]:
                    continue
                members = np.ones(len(rows), bool) if g == 0 else (sl == g).any(axis=1)
                for c in range(k):
                    pos = cd[members] == c
                    if pos.sum() < 2 or (~pos).sum() < 2:
                        continue
                    r = delong_test(pos, pa[members, c], pb[members, c])
                    delong[pi, si, g, c] = [r[s] for s in DELONG_STATS]
        for wi, col in enumerate(worst_cols):
            members = [g for g in range(n_slots) if gcols[g] == col]
            n_cases[si, n_slots + wi] = min(int(n_cases[si, g]) for g in members)
            n_class[si, n_slots + wi] = n_class[si, members].min(axis=0)
            for j in range(len(AUDIT_METRICS)):
                if all(reason[si, g, j] for g in members):
                    reason[si, n_slots + wi, j] = f"no group of {col!r} has this metric"
    ri = split_names.index(reference)
    for mi in range(nm):
        for si in range(ns):
            if si == ri:
                continue
            ref_r, oth_r = main_reps[(mi, ri)], main_reps[(mi, si)]
            gap[mi, si] = _with_stats(ref_r[0] - oth_r[0], ref_r[1:] - oth_r[1:], ci)
    glabels_all = glabels + [f"worst:{c}" for c in worst_cols]
    gcols_all = gcols + worst_cols
    gvals_all = gvals + ["worst"] * len(worst_cols)
    pair_labels = [f"{a} - {b}" for a, b in pairs]
    attrs: dict[str, Any] = {
        "n_boot": R,
        "ci": float(ci),
        "seed": int(seed),
        "min_cases": int(min_cases),
        "ece_bins": int(n_bins),
        "reference_split": reference,
        "stratified_by": "class" + (f" x {groups[0]}" if len(groups) == 1 else ""),
        "split_by": split if isinstance(split, str) else "given",
        "group_columns": ",".join(groups),
        **provenance(scores, *(inputs or {}).values()),
        **_versions(),
    }
    dims5 = ("model", "split", "group", "metric", "stat")
    ds = xr.Dataset(
        {
            "metrics": (dims5, metrics),
            "class_metrics": (
                ("model", "split", "group", "class", "class_metric", "stat"),
                cmetrics,
            ),
            "gap": (dims5, gap),
            "paired": (("pair", "split", "group", "metric", "stat"), paired),
            "paired_p_value": (("pair", "split", "group", "metric"), paired_p),
            "delong": (("pair", "split", "group", "class", "delong_stat"), delong),
            "n_cases": (("split", "group"), n_cases),
            "n_class_cases": (("split", "group", "class"), n_class),
            "reason": (("split", "group", "metric"), reason.astype(str)),
            "worst_group": (("model", "split", "group", "metric"), worst_of.astype(str)),
        },
        coords={
            "model": model_names,
            "split": split_names,
            "group": glabels_all,
            "group_column": ("group", gcols_all),
            "group_value": ("group", gvals_all),
            "metric": list(AUDIT_METRICS),
            "class": cls,
            "class_metric": list(CLASS_METRICS),
            "stat": list(STATS),
            "pair": pair_labels,
            "model_a": ("pair", [a for a, _ in pairs]),
            "model_b": ("pair", [b for _, b in pairs]),
            "delong_stat": list(DELONG_STATS),
        },
        attrs=attrs,
    )
    return ds


def save_audit(ds: xr.Dataset, path: str | os.PathLike[str]) -> None:
    """Write an audit Dataset to netCDF atomically (a crash leaves no partial file)."""
    from conceptlens._io import atomic_path

    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4")


def load_audit(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read an audit Dataset written by :func:`save_audit`.

    A missing file, a folder, a file that is not netCDF (a manifest, a scores file's
    neighbour) or a netCDF file that is not an audit (concept scores, metrics of
    ``conceptlens fit``) is a :class:`~conceptlens.exceptions.DataError` naming the file.
    """
    from conceptlens.exceptions import DataError, MissingFileError

    name = os.fspath(path)
    hint = "pass the audit.nc that `conceptlens audit --out` or save_audit wrote."
    if not os.path.exists(path):
        raise MissingFileError(f"no audit file at {name!r}; {hint}")
    if os.path.isdir(path):
        raise DataError(f"{name} is a folder, not an audit file; {hint}")
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if not (magic.startswith(b"CDF") or magic.startswith(b"\x89HDF")):
        raise DataError(f"{name} is not a netCDF file (a manifest or a CSV?); {hint}")
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except Exception as exc:  # backends raise many types; say which file and why
        raise DataError(f"{name} could not be read as an audit ({exc}); {hint}") from exc
    missing = [v for v in ("metrics", "n_cases") if v not in ds]
    if missing:
        raise DataError(
            f"{name} is a netCDF file but not an audit (no {', '.join(map(repr, missing))}; "
            f"it has {sorted(map(str, ds.data_vars))}); {hint}"
        )
    return ds
