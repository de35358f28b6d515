"""Save and load fitted heads: safetensors arrays plus a JSON description (no pickle)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from conceptlens._io import atomic_path, atomic_write_text
from conceptlens._version import __version__
from conceptlens.exceptions import DataError, MissingFileError
from conceptlens.heads._cbm import ConceptBottleneckClassifier
from conceptlens.heads._coef import fold_binary
from conceptlens.heads._cv import SparseLinearHeadCV
from conceptlens.heads._sparse import SparseLinearHead

__all__ = ["load_head", "save_head"]

_FORMAT = 1
_KINDS = {
    "SparseLinearHead": SparseLinearHead,
    "SparseLinearHeadCV": SparseLinearHeadCV,
    "ConceptBottleneckClassifier": ConceptBottleneckClassifier,
}


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def save_head(model, path: str | os.PathLike[str]) -> Path:
    """Write a fitted head to the folder ``path`` (``head.safetensors`` + ``head.json``).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from conceptlens.heads import SparseLinearHead, save_head, load_head
    >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = (X[:, 0] > 0).astype(int)
    >>> head = SparseLinearHead().fit(X, y)
    >>> d = save_head(head, tempfile.mkdtemp() + "/m")
    >>> bool((load_head(d).predict(X) == head.predict(X)).all())
    True
    """
    from safetensors.numpy import save_file

    kind = type(model).__name__
    if kind not in _KINDS:
        raise DataError(f"cannot save a {kind}; supported: {sorted(_KINDS)}.")
    head = model.head_ if isinstance(model, ConceptBottleneckClassifier) else model
    if not hasattr(head, "coef_"):
        raise DataError("the model is not fitted; call fit before save_head.")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        "coef": np.ascontiguousarray(head.coef_, dtype=np.float64),
        "intercept": np.ascontiguousarray(head.intercept_, dtype=np.float64),
        "mean": np.ascontiguousarray(head.mean_, dtype=np.float64),
        "scale": np.ascontiguousarray(head.scale_, dtype=np.float64),
    }
    params = {
        k: _jsonable(v)
        for k, v in model.get_params().items()
        if k not in ("knowledge_prior", "concept_head") and not isinstance(v, dict)
    }
    meta = {
        "format": _FORMAT,
        "conceptlens_version": __version__,
        "kind": kind,
        "params": params,
        "classes": [_jsonable(c) for c in head.classes_.tolist()],
        "classes_dtype": head.classes_.dtype.kind,
        "multilabel": bool(head.multilabel_),
        "mode": head.mode_,
        "n_features_in": int(head.n_features_in_),
        "concept_names": (
            [str(c) for c in model.concept_names_]
            if isinstance(model, ConceptBottleneckClassifier)
            else None
        ),
        "C_": float(getattr(model, "C_", getattr(head, "C_", head.get_params().get("C", 0)))),
    }
    with atomic_path(out / "head.safetensors") as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(out / "head.json", json.dumps(meta, indent=2, sort_keys=True))
    return out


def load_head(path: str | os.PathLike[str]):
    """Load a head written by :func:`save_head`; returns a fitted estimator."""
    from safetensors.numpy import load_file

    folder = Path(path)
    for name in ("head.json", "head.safetensors"):
        if not (folder / name).is_file():
            raise MissingFileError(
                f"{folder / name} not found; point to a folder written by save_head or "
                "`conceptlens fit --out`."
            )
    meta = json.loads((folder / "head.json").read_text(encoding="utf-8"))
    if meta.get("format") != _FORMAT or meta.get("kind") not in _KINDS:
        raise DataError(
            f"{folder / 'head.json'} has format {meta.get('format')!r} and kind "
            f"{meta.get('kind')!r}; this conceptlens reads format {_FORMAT} of {sorted(_KINDS)}."
        )
    arrays = load_file(str(folder / "head.safetensors"))
    model = _KINDS[meta["kind"]](**meta["params"])
    head = SparseLinearHead() if isinstance(model, ConceptBottleneckClassifier) else model
    classes = np.asarray(meta["classes"])
    if meta["classes_dtype"] in "iu":
        classes = classes.astype(np.int64)
    head.coef_ = arrays["coef"]
    head.intercept_ = arrays["intercept"]
    head.mean_ = arrays["mean"]
    head.scale_ = arrays["scale"]
    head.classes_ = classes
    head.multilabel_ = meta["multilabel"]
    head.mode_ = meta["mode"]
    head.n_features_in_ = meta["n_features_in"]
    if isinstance(model, SparseLinearHeadCV):
        model.C_ = meta["C_"]
    if isinstance(model, ConceptBottleneckClassifier):
        import xarray as xr

        model.head_ = head
        model.classes_ = classes
        model.n_features_in_ = head.n_features_in_
        model.concept_names_ = np.asarray(meta["concept_names"])
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
        if model.C is None:
            model.C_ = meta["C_"]
    return model
