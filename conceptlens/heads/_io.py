"""Save and load fitted heads: one folder with safetensors arrays and a JSON description.

A head folder holds ``head.safetensors`` (``coef``, ``intercept``, ``mean``, ``scale``),
``head.json`` (kind, every constructor parameter, classes, what the head was trained on)
and any extra files the caller adds (``conceptlens fit`` adds ``metrics.nc``). The folder
is written as a whole: it is built beside the target and renamed into place, so an
interrupted save leaves the earlier folder complete and untouched. Nothing is pickled.

Everything read back is validated -- JSON schema, tensor names, shapes and finiteness --
and an error names the file and the field. A head remembers the score mode, the bank
fingerprint and the backbone fingerprint of the scores it was trained on;
:func:`check_head_scores` (and ``load_head(..., scores=...)``) refuses scores from another
mode, bank or backbone unless the caller passes ``allow_mismatch=True``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from conceptlens._io import atomic_dir, plain_file_mode, user_path
from conceptlens._version import __version__
from conceptlens.exceptions import ConfigError, DataError, MissingFileError
from conceptlens.heads._coef import fold_binary

__all__ = ["PROVENANCE_KEYS", "check_head_scores", "load_head", "save_head", "used_in_fit"]

_FORMAT = 1
_MAX_META_BYTES = 64_000_000
_TENSORS = ("coef", "intercept", "mean", "scale")
#: optional: hashes of the ids of the samples the head was fitted (or its C selected) on
_SAMPLE_TENSOR = "fit_sample_hashes"
_MODES = ("sigmoid", "multinomial")
#: score attributes a head records and checks (refused on mismatch)
PROVENANCE_KEYS = ("score_mode", "bank_fingerprint", "backbone_fingerprint")
#: recorded for the reader, not checked
_INFO_KEYS = ("bank_id", "bank_version", "backbone", "template_hash", "standardized")


def _kinds() -> dict[str, type]:
    # imported at call time: the estimators' modules import nothing from here
    from conceptlens.heads import (
        ConceptBottleneckClassifier,
        LinearProbe,
        SparseLinearHead,
        SparseLinearHeadCV,
    )

    return {
        "SparseLinearHead": SparseLinearHead,
        "SparseLinearHeadCV": SparseLinearHeadCV,
        "ConceptBottleneckClassifier": ConceptBottleneckClassifier,
        "LinearProbe": LinearProbe,
    }


# --------------------------------------------------------------------------- parameters
def _encode(value: Any, where: str) -> Any:
    """A JSON value that :func:`_decode` turns back into an equal parameter value."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return {"__npscalar__": {"dtype": value.dtype.str, "value": _encode(value.item(), where)}}
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O" and all(isinstance(v, str) for v in value.reshape(-1)):
            value = value.astype(str)  # labels read by pandas come as object arrays
        if value.dtype.kind not in "biufU":
            raise ConfigError(
                f"cannot save parameter {where}: array of dtype {value.dtype} (use numbers or "
                "strings)"
            )
        return {
            "__ndarray__": {
                "dtype": value.dtype.str,
                "shape": list(value.shape),
                "data": [_encode(v, where) for v in value.reshape(-1).tolist()],
            }
        }
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k, where), _encode(v, where)] for k, v in value.items()]}
    import xarray as xr

    if isinstance(value, xr.DataArray):
        return {
            "__dataarray__": {
                "dims": list(value.dims),
                "name": value.name,
                "data": _encode(np.asarray(value.values), where),
                "coords": {
                    d: _encode(np.asarray(value[d].values), where)
                    for d in value.dims
                    if d in value.coords
                },
            }
        }
    raise ConfigError(
        f"cannot save parameter {where}={type(value).__name__}; save_head stores numbers, "
        "strings, lists, dicts, arrays and labelled arrays only"
    )


def _decode(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise DataError(f"{where}: unexpected object {sorted(value)[:5]}")
    ((tag, body),) = value.items()
    if tag == "__float__" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "__npscalar__" and isinstance(body, dict):
        return np.dtype(body["dtype"]).type(_decode(body["value"], where))
    if tag == "__ndarray__" and isinstance(body, dict):
        data = [_decode(v, where) for v in body["data"]]
        return np.asarray(data, dtype=np.dtype(body["dtype"])).reshape(body["shape"])
    if tag == "__tuple__" and isinstance(body, list):
        return tuple(_decode(v, where) for v in body)
    if tag == "__dict__" and isinstance(body, list):
        return {_hashable(_decode(k, where)): _decode(v, where) for k, v in body}
    if tag == "__dataarray__" and isinstance(body, dict):
        import xarray as xr

        coords = {d: _decode(c, where) for d, c in body.get("coords", {}).items()}
        return xr.DataArray(
            _decode(body["data"], where), dims=body["dims"], coords=coords, name=body.get("name")
        )
    raise DataError(f"{where}: unknown value tag {tag!r}")


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


# --------------------------------------------------------------------------- provenance
def _provenance(source: Any) -> dict[str, str]:
    attrs = getattr(source, "attrs", source)
    if not isinstance(attrs, Mapping):
        raise ConfigError(
            "trained_on must be the training scores (an xr.DataArray from score_concepts) "
            f"or a mapping of their attrs, got {type(source).__name__}"
        )
    record = {
        k: str(attrs[k]) for k in (*PROVENANCE_KEYS, *_INFO_KEYS) if attrs.get(k) is not None
    }
    if "standardized" not in record and "score_mode" in record:
        # scores straight from score_concepts: recorded as raw, so that a loaded head
        # refuses ConceptStandardizer output as it refuses raw scores when fitted on those
        record["standardized"] = "0"
    return record


def check_head_scores(model: Any, scores: Any, *, allow_mismatch: bool = False) -> None:
    """Refuse scores that differ from the head's training scores in mode, bank or backbone.

    Compares the ``trained_on_`` record of ``model`` (set by :func:`save_head` /
    :func:`load_head`) with the attrs of ``scores`` for every key of
    :data:`PROVENANCE_KEYS` that both sides record.

    Parameters
    ----------
    model : estimator
        A head with a ``trained_on_`` dict (heads saved without one are not checked).
    scores : xr.DataArray or mapping
        Concept scores (their ``attrs``) to be fed to the head.
    allow_mismatch : bool, default False
        Accept a mismatch anyway (for example scores of a retrained backbone that you know
        to be compatible).

    Raises
    ------
    ConfigError
        On a mismatch; the message names each differing field with both values.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> head = SimpleNamespace(trained_on_={"score_mode": "relative"})
    >>> check_head_scores(head, {"score_mode": "relative"})
    >>> check_head_scores(head, {"score_mode": "cosine"}, allow_mismatch=True)
    """
    record = getattr(model, "trained_on_", None) or {}
    attrs = getattr(scores, "attrs", scores)
    if not isinstance(attrs, Mapping) or not record:
        return
    diff = [
        f"{k}: head trained on {record[k]!r}, scores have {str(attrs[k])!r}"
        for k in PROVENANCE_KEYS
        if k in record and attrs.get(k) is not None and str(attrs[k]) != record[k]
    ]
    if diff and not allow_mismatch:
        raise ConfigError(
            "these concept scores do not come from the same scoring as the head's training "
            "scores (" + "; ".join(diff) + "). Score the images with the same backbone, bank "
            "and --mode, or pass allow_mismatch=True (CLI: --allow-score-mismatch) if you are "
            "sure they are compatible."
        )


# --------------------------------------------------------------------------- save
def save_head(
    model: Any,
    path: str | os.PathLike[str],
    *,
    trained_on: Any = None,
    fit_samples: Any = None,
    extra_files: Mapping[str, Callable[[Path], Any]] | None = None,
) -> Path:
    """Write a fitted head to the folder ``path``, atomically as a whole.

    Parameters
    ----------
    model : SparseLinearHead, SparseLinearHeadCV, ConceptBottleneckClassifier or LinearProbe
        A fitted head (a LinearProbe without ``residual``).
    path : str or path
        The model folder. An existing folder is replaced only if it is empty or holds a
        ``head.json`` (an earlier model); anything else is refused.
    trained_on : xr.DataArray or mapping, optional
        The training scores (or their attrs): their score mode, bank fingerprint and
        backbone fingerprint are stored and checked when the head is applied. Default: the
        record of a head that was loaded with :func:`load_head`, if any.
    fit_samples : sequence of sample ids or xr.DataArray, optional
        The samples the head was fitted on or had its ``C`` selected on (ids, or scores
        whose ``sample`` coordinate holds them). Stored as 64-bit hashes of the ids (not
        the ids), so that :func:`used_in_fit` and the CLI can warn when a head is
        evaluated on its own training samples. Default: the ``sample`` ids of
        ``trained_on`` when it is a DataArray, else those of a loaded head.
    extra_files : mapping of str to callable, optional
        File name -> function that writes that file at the path it is given; the files
        become part of the same atomic folder (``conceptlens fit`` writes ``metrics.nc``).

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from conceptlens.heads import SparseLinearHead, save_head, load_head
    >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = (X[:, 0] > 0).astype(int)
    >>> head = SparseLinearHead(class_weight={0: 1.0, 1: 2.0}).fit(X, y)
    >>> d = save_head(head, tempfile.mkdtemp() + "/m")
    >>> loaded = load_head(d)
    >>> loaded.get_params() == head.get_params()
    True
    >>> bool((loaded.predict(X) == head.predict(X)).all())
    True
    """
    from safetensors.numpy import save_file

    kinds = _kinds()
    kind = type(model).__name__
    if kind not in kinds:
        raise ConfigError(f"cannot save a {kind}; supported: {sorted(kinds)}.")
    cbm = kinds["ConceptBottleneckClassifier"]
    head = model.head_ if isinstance(model, cbm) and hasattr(model, "head_") else model
    if kind == "LinearProbe":
        if model.residual:
            raise ConfigError(
                "a residual LinearProbe (PCBM-h) holds a second, concept head; save_head "
                "saves plain probes only. Save the concept head on its own, or refit."
            )
        head = getattr(model, "probe_", model)
    if not hasattr(head, "coef_"):
        raise DataError("the model is not fitted; call fit before save_head.")
    out = user_path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; save_head writes a model folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "head.json").is_file():
        raise ConfigError(
            f"{out} is a folder that holds other files and no head.json; save_head replaces "
            "the whole folder, so choose a new or empty folder"
        )
    tensors = {
        name: np.ascontiguousarray(getattr(head, f"{name}_"), dtype=np.float64)
        for name in _TENSORS
    }
    bad = [name for name, t in tensors.items() if not np.isfinite(t).all()]
    if bad:
        raise DataError(
            f"the head's {bad} hold NaN or infinite values; it would predict NaN "
            "probabilities, so it is not saved. Check the training scores for NaN and refit."
        )
    hashes = _fit_hashes(model, trained_on, fit_samples)
    if hashes is not None:
        tensors[_SAMPLE_TENSOR] = hashes
    params = {k: _encode(v, f"{kind}.{k}") for k, v in model.get_params(deep=False).items()}
    record = (
        _provenance(trained_on)
        if trained_on is not None
        else dict(getattr(model, "trained_on_", None) or {})
    )
    classes = np.asarray(head.classes_)
    meta = {
        "format": _FORMAT,
        "conceptlens_version": __version__,
        "kind": kind,
        "params": params,
        "classes": _encode(classes, "classes"),
        "multilabel": bool(head.multilabel_),
        "mode": str(head.mode_),
        "n_features_in": int(head.n_features_in_),
        "concept_names": (
            [str(c) for c in getattr(model, "concept_names_", [])]
            if kind == "ConceptBottleneckClassifier"
            else None
        ),
        "C_": _encode(_selected_C(model, head), "C_"),
        "trained_on": record or None,
    }
    for name in extra_files or {}:
        if name in ("head.json", "head.safetensors") or Path(name).name != name:
            raise ConfigError(f"extra file name {name!r} must be a plain new file name")
    with atomic_dir(out) as tmp:
        save_file(tensors, str(tmp / "head.safetensors"))
        plain_file_mode(tmp / "head.safetensors")  # safetensors writes 0600
        (tmp / "head.json").write_text(
            json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8"
        )
        for name, write in (extra_files or {}).items():
            write(tmp / name)
    if record:
        model.trained_on_ = record
    if hashes is not None:
        model.fit_sample_hashes_ = hashes
    return out


def sample_hashes(ids: Any) -> np.ndarray:
    """Sorted unique 64-bit BLAKE2b hashes of sample ids (their ``str``), uint64."""
    return np.unique(sample_hashes_each(ids))


def _fit_hashes(model: Any, trained_on: Any, fit_samples: Any) -> np.ndarray | None:
    src = fit_samples
    if src is None and trained_on is not None and hasattr(trained_on, "coords"):
        src = trained_on
    if src is None:
        return getattr(model, "fit_sample_hashes_", None)
    if hasattr(src, "coords"):
        if "sample" not in src.coords:
            return None
        src = src["sample"].values
    return sample_hashes(src)


def used_in_fit(model: Any, scores: Any) -> np.ndarray | None:
    """Which samples of ``scores`` the head was fitted (or had its C selected) on.

    Metrics, explanations and audits of those samples are in-sample, so optimistic.
    The head knows its training samples when :func:`save_head` recorded them
    (``conceptlens fit`` does; see ``fit_samples``) and it was loaded with
    :func:`load_head`, or after such a save.

    Parameters
    ----------
    model : a head from :func:`load_head` (or passed to :func:`save_head`)
    scores : xr.DataArray with a ``sample`` coordinate, or a sequence of sample ids

    Returns
    -------
    numpy.ndarray of bool, shape (n_samples,), or None
        None when the head records no training samples.

    Examples
    --------
    >>> import numpy as np, tempfile, xarray as xr
    >>> from conceptlens.heads import SparseLinearHead, load_head, save_head, used_in_fit
    >>> X = np.random.default_rng(0).normal(size=(40, 2)); y = (X[:, 0] > 0).astype(int)
    >>> ids = [f"img{i}" for i in range(40)]
    >>> d = save_head(SparseLinearHead().fit(X[:30], y[:30]), tempfile.mkdtemp() + "/m",
    ...               fit_samples=ids[:30])
    >>> int(used_in_fit(load_head(d), ids).sum())
    30
    """
    known = getattr(model, "fit_sample_hashes_", None)
    if known is None:
        return None
    ids = scores["sample"].values if hasattr(scores, "coords") else scores
    return np.isin(sample_hashes_each(ids), known)


def sample_hashes_each(ids: Any) -> np.ndarray:
    """The 64-bit hash of each id, in order (see :func:`sample_hashes`)."""
    import hashlib

    vals = np.asarray(ids).ravel()
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(), "little")
            for v in vals
        ),
        dtype=np.uint64,
        count=len(vals),
    )


def _selected_C(model: Any, head: Any) -> float | None:
    for obj in (model, head):
        c = getattr(obj, "C_", None)
        if c is not None:
            return float(c)
    c = head.get_params().get("C")
    return None if c is None else float(c)


# --------------------------------------------------------------------------- load
def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for k, v in pairs:
        if k in seen:
            raise DataError(f"duplicate key {k!r}")
        seen[k] = v
    return seen


def _read_meta(file: Path) -> dict[str, Any]:
    size = file.stat().st_size
    if size > _MAX_META_BYTES:
        raise DataError(
            f"{file}: {size:,} bytes is far too large for a head description (limit "
            f"{_MAX_META_BYTES:,}); it is not a head.json written by save_head"
        )
    try:
        text = file.read_text(encoding="utf-8")
        meta = json.loads(text, object_pairs_hook=_reject_duplicates)
    except UnicodeDecodeError:
        raise DataError(
            f"{file}: not UTF-8 text; it is not a head.json written by save_head"
        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{file}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); the "
            "file is damaged, save the model again"
        ) from None
    except (DataError, RecursionError) as exc:
        raise DataError(f"{file}: {exc}") from None
    if not isinstance(meta, dict):
        raise DataError(f"{file}: expected a JSON object, got {type(meta).__name__}")
    return meta


def _field(meta: dict[str, Any], key: str, types: Any, file: Path, what: str) -> Any:
    if key not in meta:
        raise DataError(f"{file}: field {key!r} is missing ({what})")
    value = meta[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise DataError(f"{file}: field {key!r} must be {what}, got {value!r}")
    if not isinstance(value, types):
        raise DataError(f"{file}: field {key!r} must be {what}, got {type(value).__name__}")
    return value


_MAX_HEADER = 1 << 16


def _read_tensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load as load_bytes

    data = file.read_bytes()
    # a head's header names at most five tensors (a few hundred bytes); safetensors itself
    # accepts up to 100 MB of header, which a forged file can fill with metadata
    header = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    if header > _MAX_HEADER:
        raise DataError(
            f"{file}: its safetensors header claims {header:,} bytes (a head's is under "
            f"{_MAX_HEADER:,}); the file was not written by save_head, save the model again"
        )
    try:
        arrays = load_bytes(data)
    except Exception as exc:  # SafetensorError and friends: a damaged file
        raise DataError(
            f"{file}: not a readable safetensors file ({type(exc).__name__}: "
            f"{str(exc)[:200]}); it is truncated or damaged, save the model again"
        ) from None
    names = set(arrays)
    missing = sorted(set(_TENSORS) - names)
    extra = sorted(names - set(_TENSORS) - {_SAMPLE_TENSOR})
    if missing or extra:
        raise DataError(
            f"{file}: tensors {sorted(names)[:8]} do not match a head (missing {missing}, "
            f"unexpected {extra[:5]}); expected {list(_TENSORS)}"
        )
    return arrays


def load_head(
    path: str | os.PathLike[str], *, scores: Any = None, allow_mismatch: bool = False
) -> Any:
    """Load a head written by :func:`save_head`; returns a fitted estimator.

    Parameters
    ----------
    path : str or path
        The model folder.
    scores : xr.DataArray, optional
        Scores the head will be applied to: refused (``ConfigError``) if their score mode,
        bank or backbone fingerprint differ from the training scores'
        (see :func:`check_head_scores`).
    allow_mismatch : bool, default False
        Accept such a mismatch.

    Returns
    -------
    estimator
        With ``trained_on_`` (dict, possibly empty) describing the training scores.

    Raises
    ------
    MissingFileError
        If ``head.json`` or ``head.safetensors`` is missing.
    DataError
        If either file is damaged or inconsistent: invalid JSON, a missing or mistyped
        field, unknown parameters, missing/extra tensors, wrong shapes, non-finite values.
        The message names the file and the field.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from conceptlens.heads import SparseLinearHead, save_head, load_head
    >>> X = np.random.default_rng(0).normal(size=(40, 2)); y = (X[:, 1] > 0).astype(int)
    >>> d = save_head(SparseLinearHead().fit(X, y), tempfile.mkdtemp() + "/m")
    >>> load_head(d).n_features_in_
    2
    """
    folder = user_path(path)
    jfile, tfile = folder / "head.json", folder / "head.safetensors"
    for file in (jfile, tfile):
        if not file.is_file():
            raise MissingFileError(
                f"{file} not found; point to a folder written by save_head or "
                "`conceptlens fit --out`."
            )
    meta = _read_meta(jfile)
    kinds = _kinds()
    fmt = meta.get("format")
    kind = meta.get("kind")
    if isinstance(fmt, bool) or fmt != _FORMAT or kind not in kinds:
        raise DataError(
            f"{jfile} has format {fmt!r} and kind {str(kind)[:60]!r}; this conceptlens reads "
            f"format {_FORMAT} of {sorted(kinds)}."
        )
    cls_ = kinds[kind]
    params = _field(meta, "params", dict, jfile, "an object of constructor parameters")
    known = set(cls_().get_params(deep=False))
    unknown = sorted(set(params) - known)
    if unknown:
        raise DataError(
            f"{jfile}: unknown parameters {unknown[:5]} for {kind} (known: {sorted(known)}); "
            "the file was written by another version or edited"
        )
    try:
        decoded = {k: _decode(v, f"{jfile}: params.{k}") for k, v in params.items()}
        classes = np.asarray(_decode(meta.get("classes"), f"{jfile}: classes"))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{jfile}: cannot read the parameters or classes ({exc})") from None
    if classes.ndim != 1 or len(classes) == 0 or classes.dtype.kind not in "biuU":
        raise DataError(f"{jfile}: field 'classes' must be a non-empty list of labels")
    multilabel = _field(meta, "multilabel", bool, jfile, "true or false")
    mode = _field(meta, "mode", str, jfile, f"one of {_MODES}")
    if mode not in _MODES:
        raise DataError(f"{jfile}: field 'mode' is {mode!r}; expected one of {_MODES}")
    n_features = _field(meta, "n_features_in", int, jfile, "a positive integer")
    if n_features <= 0:
        raise DataError(f"{jfile}: field 'n_features_in' must be positive, got {n_features}")
    record = meta.get("trained_on") or {}
    if not isinstance(record, dict) or not all(isinstance(v, str) for v in record.values()):
        raise DataError(f"{jfile}: field 'trained_on' must be an object of strings")

    arrays = _read_tensors(tfile)
    n_out = 1 if (len(classes) == 2 and not multilabel and mode == "sigmoid") else len(classes)
    expected = {
        "coef": (n_out, n_features),
        "intercept": (n_out,),
        "mean": (n_features,),
        "scale": (n_features,),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise DataError(
                f"{tfile}: tensor {name!r} has shape {arrays[name].shape}, expected {shape} "
                f"for {len(classes)} classes and {n_features} features in {jfile.name}"
            )
        if not np.isfinite(arrays[name]).all():
            raise DataError(
                f"{tfile}: tensor {name!r} holds NaN or infinite values; the model would "
                "predict NaN probabilities. Refit and save it again."
            )
    if not (arrays["scale"] > 0).all():
        raise DataError(f"{tfile}: tensor 'scale' must be positive")

    try:
        model = cls_(**decoded)
    except Exception as exc:
        raise DataError(f"{jfile}: parameters do not build a {kind} ({exc})") from None
    is_cbm = kind == "ConceptBottleneckClassifier"
    is_probe = kind == "LinearProbe"
    if is_probe and model.residual:
        raise DataError(f"{jfile}: a saved LinearProbe cannot be residual; save it again")
    if is_probe:
        head = kinds["SparseLinearHead"](
            C=model.C,
            l1_ratio=model.l1_ratio,
            class_weight=model.class_weight,
            standardize=model.standardize,
            tol=model.tol,
            max_iter=model.max_iter,
        )
    else:
        head = kinds["SparseLinearHead"]() if is_cbm else model
    for name in _TENSORS:
        setattr(head, f"{name}_", arrays[name].astype(np.float64))
    head.classes_ = classes
    head.multilabel_ = multilabel
    head.mode_ = mode
    head.n_features_in_ = n_features
    c_sel = meta.get("C_")
    if c_sel is not None and (isinstance(c_sel, bool) or not isinstance(c_sel, int | float)):
        raise DataError(f"{jfile}: field 'C_' must be a number or null")
    if kind == "SparseLinearHeadCV":
        model.C_ = c_sel
    if is_cbm:
        _fill_cbm(model, head, meta, classes, jfile, c_sel)
    if is_probe:
        model.probe_ = head
        for name in ("classes_", "multilabel_", "n_features_in_", "coef_", "intercept_"):
            setattr(model, name, getattr(head, name))
    model.trained_on_ = dict(record)
    if _SAMPLE_TENSOR in arrays:
        h = arrays[_SAMPLE_TENSOR]
        if h.dtype != np.uint64 or h.ndim != 1:
            raise DataError(
                f"{tfile}: tensor {_SAMPLE_TENSOR!r} must be 1-D uint64 sample hashes, got "
                f"{h.dtype} {h.shape}; save the model again"
            )
        model.fit_sample_hashes_ = np.unique(h)
    if scores is not None:
        check_head_scores(model, scores, allow_mismatch=allow_mismatch)
    return model


def _fill_cbm(
    model: Any, head: Any, meta: dict, classes: np.ndarray, jfile: Path, c_sel: Any
) -> None:
    import xarray as xr

    names = meta.get("concept_names")
    if (
        not isinstance(names, list)
        or len(names) != head.n_features_in_
        or not all(isinstance(n, str) for n in names)
        or len(set(names)) != len(names)
    ):
        raise DataError(
            f"{jfile}: field 'concept_names' must list {head.n_features_in_} distinct concept "
            "names"
        )
    model.head_ = head
    model.classes_ = classes
    model.n_features_in_ = head.n_features_in_
    model.concept_names_ = np.asarray(names)
    coef, intercept = fold_binary(head.coef_, head.intercept_, len(classes), head.multilabel_)
    cls = [str(c) for c in classes]
    model.coef_ = xr.DataArray(
        coef,
        dims=("class", "concept"),
        coords={"class": cls, "concept": model.concept_names_},
        name="coef",
    )
    model.intercept_ = xr.DataArray(
        intercept, dims=("class",), coords={"class": cls}, name="intercept"
    )
    if model.C is None and c_sel is not None:
        model.C_ = c_sel
