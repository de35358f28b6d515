"""Provenance, fingerprints and small formatting helpers shared by the reports."""

from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Any

import numpy as np

SCORE_PROVENANCE = (
    "backbone",
    "backbone_fingerprint",
    "bank_id",
    "bank_version",
    "bank_fingerprint",
    "template_hash",
    "score_mode",
)
PACKAGES = (
    "conceptlens",
    "numpy",
    "scipy",
    "xarray",
    "pandas",
    "scikit-learn",
    "numba",
    "torch",
    "open_clip_torch",
    "matplotlib",
)


def data_fingerprint(scores: Any) -> str:
    """SHA-256 (first 16 hex digits) of the sample ids, labels and score values.

    Two reports with the same fingerprint were computed from the same scored data.
    """
    h = hashlib.sha256()
    if "sample" in getattr(scores, "coords", {}):
        h.update("\n".join(map(str, scores["sample"].values)).encode())
    if "label" in getattr(scores, "coords", {}):
        h.update("\n".join(map(str, scores["label"].values)).encode())
    if "concept" in getattr(scores, "coords", {}):
        h.update("\n".join(map(str, scores["concept"].values)).encode())
    h.update(np.ascontiguousarray(np.asarray(scores, dtype=np.float64)).tobytes())
    return h.hexdigest()[:16]


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def score_provenance(*sources: Any) -> dict[str, str]:
    """The backbone and bank fields of the first source (attrs mapping) that has each."""
    out: dict[str, str] = {}
    for src in sources:
        attrs = getattr(src, "attrs", src) or {}
        for k in SCORE_PROVENANCE:
            if k not in out and attrs.get(k) not in (None, ""):
                out[k] = str(attrs[k])
    return out


def model_description(model: Any) -> dict[str, str]:
    """Class, classes, concepts used and training-score record of a fitted head."""
    out = {"model": type(model).__name__}
    classes = getattr(model, "classes_", None)
    if classes is not None:
        out["classes"] = ", ".join(map(str, classes))
    coef = getattr(model, "coef_", None)
    if coef is not None:
        c = np.asarray(coef)
        c = c.reshape(-1, c.shape[-1]) if c.ndim > 1 else c[None]
        out["concepts used"] = f"{int((np.abs(c) > 0).any(axis=0).sum())} of {c.shape[-1]}"
    for key in ("C", "l1_ratio", "max_concepts_per_class", "random_state"):
        if hasattr(model, key) and getattr(model, key) is not None:
            out[key] = str(getattr(model, key))
    rec = getattr(model, "trained_on_", None) or {}
    for k, v in rec.items():
        out[f"trained on: {k}"] = str(v)
    return out


def now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def ordinal(k: int) -> str:
    """1 -> 'largest', 2 -> '2nd largest'..."""
    if k == 1:
        return "largest"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(k % 10 if k % 100 not in (11, 12, 13) else 0, "th")
    return f"{k}{suffix} largest"
