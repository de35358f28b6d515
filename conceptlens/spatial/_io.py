"""Save and load prototype atlases and prototype classifiers: folders, no pickle.

An atlas folder holds ``atlas.safetensors`` (the prototype vectors and their links) and
``atlas.json`` (names, concepts, training ids, grid, input size, build report and the
backbone it was built with). A prototype-classifier folder holds ``classifier.json``
and ``classifier.safetensors`` (the prototypes the head uses, the training activations
and labels that refinement refits on, the typical-absent values), the atlas in
``atlas/`` and the head in ``head/`` (as :func:`conceptlens.heads.save_head` writes it).
Folders are written atomically as a whole, with the permissions of plainly created
files; a folder holding anything else is never replaced. Everything read back is
validated, and an error names the file and the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from conceptlens._io import atomic_dir, plain_file_mode, user_path
from conceptlens._version import __version__
from conceptlens.exceptions import ConfigError, DataError, MissingFileError
from conceptlens.spatial._atlas import PrototypeAtlas

__all__ = ["load_atlas", "load_prototype_classifier", "save_atlas", "save_prototype_classifier"]

_FORMAT = 1
_ATLAS_TENSORS = ("vectors", "source_sample", "source_y", "source_x", "source_cosine", "wins")
_CLF_TENSORS = ("train_activations",)


def _target(path: Any, marker: str, writer: str) -> Path:
    """``path`` as a folder that ``writer`` may replace (new, empty or holding ``marker``)."""
    out = user_path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; {writer} writes a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise ConfigError(
            f"{out} is a folder that holds other files and no {marker}; {writer} replaces the "
            "whole folder, so choose a new or empty folder"
        )
    return out


def _write_tensors(arrays: dict[str, np.ndarray], file: Path) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(file))
    plain_file_mode(file)  # safetensors writes 0600


def _read_json(file: Path, what: str) -> dict[str, Any]:
    from conceptlens._io import read_json

    meta = read_json(file, what=what, fix="save it again", max_bytes=200_000_000)
    if not isinstance(meta, dict):
        raise DataError(f"{file}: expected a JSON object, got {type(meta).__name__}")
    return meta


def _read_tensors(file: Path, names: tuple[str, ...], optional: tuple[str, ...] = ()) -> Any:
    from safetensors.numpy import load as load_bytes

    try:
        arrays = load_bytes(file.read_bytes())
    except Exception as exc:  # SafetensorError and friends: a damaged file
        raise DataError(
            f"{file}: not a readable safetensors file ({type(exc).__name__}: "
            f"{str(exc)[:200]}); it is truncated or damaged, save it again"
        ) from None
    missing = sorted(set(names) - set(arrays))
    extra = sorted(set(arrays) - set(names) - set(optional))
    if missing or extra:
        raise DataError(
            f"{file}: tensors {sorted(arrays)[:8]} are not the expected ones (missing "
            f"{missing}, unexpected {extra[:5]}); expected {list(names)}"
        )
    return arrays


def _field(meta: dict[str, Any], key: str, ok: Any, file: Path, what: str) -> Any:
    if key not in meta or not ok(meta[key]):
        got = "missing" if key not in meta else f"{str(meta[key])[:60]!r}"
        raise DataError(f"{file}: field {key!r} must be {what}, got {got}; save it again")
    return meta[key]


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(s, str) for s in v)


def _posint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _check_format(meta: dict[str, Any], kind: str, file: Path) -> None:
    fmt, got = meta.get("format"), meta.get("kind")
    if isinstance(fmt, bool) or fmt != _FORMAT or got != kind:
        raise DataError(
            f"{file} has format {fmt!r} and kind {str(got)[:60]!r}; this conceptlens reads "
            f"format {_FORMAT} of {kind}"
        )


def _write_atlas(atlas: PrototypeAtlas, folder: Path) -> None:
    if not isinstance(atlas, PrototypeAtlas):
        raise ConfigError(f"save_atlas saves a PrototypeAtlas, got {type(atlas).__name__}")
    if not np.isfinite(atlas.vectors).all():
        raise DataError("the atlas's prototype vectors hold NaN or infinite values")
    _write_tensors(
        {
            "vectors": np.asarray(atlas.vectors, np.float32),
            "source_sample": np.asarray(atlas.source_sample, np.int64),
            "source_y": np.asarray(atlas.source_y, np.int64),
            "source_x": np.asarray(atlas.source_x, np.int64),
            "source_cosine": np.asarray(atlas.source_cosine, np.float32),
            "wins": np.asarray(atlas.wins, np.int64),
        },
        folder / "atlas.safetensors",
    )
    meta = {
        "format": _FORMAT,
        "kind": "PrototypeAtlas",
        "conceptlens_version": __version__,
        "names": list(atlas.names),
        "concepts": list(atlas.concepts),
        "source_ids": list(atlas.source_ids),
        "train_ids": list(atlas.train_ids),
        "grid": [int(g) for g in atlas.grid],
        "image_size": int(atlas.image_size),
        "info": atlas.info,
    }
    try:
        text = json.dumps(meta, indent=1, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"the atlas's info cannot be written as JSON ({exc})") from None
    (folder / "atlas.json").write_text(text, encoding="utf-8")


def save_atlas(atlas: PrototypeAtlas, path: str | os.PathLike[str]) -> Path:
    """Write a :class:`PrototypeAtlas` to the folder ``path``, atomically as a whole.

    Parameters
    ----------
    atlas : PrototypeAtlas
    path : str or path
        The folder (``~`` is expanded). An existing folder is replaced only if it is empty
        or holds an ``atlas.json`` (an earlier atlas); anything else is refused.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> save_atlas(atlas, "runs/atlas")  # doctest: +SKIP
    >>> load_atlas("runs/atlas", backbone=bb).names == atlas.names  # doctest: +SKIP
    True
    """
    out = _target(path, "atlas.json", "save_atlas")
    with atomic_dir(out) as tmp:
        _write_atlas(atlas, tmp)
    return out


def _check_backbone(atlas: PrototypeAtlas, backbone: Any, where: Path) -> None:
    if backbone is None:
        return
    want = atlas.info.get("backbone_fingerprint")
    have = getattr(backbone, "fingerprint", None)
    name = atlas.info.get("backbone", "?")
    if want and have and want != have:
        raise ConfigError(
            f"{where} was built with backbone {name!r} ({want}), not with "
            f"{getattr(backbone, 'name', '?')!r} ({have}); its prototypes live in that "
            "backbone's embedding space. Load the backbone it was built with, or rebuild "
            "the atlas with build_atlas."
        )
    if int(backbone.image_size) != atlas.image_size:
        raise ConfigError(
            f"{where}: the atlas is for {atlas.image_size}px inputs, the backbone takes "
            f"{backbone.image_size}px; rebuild the atlas with this backbone"
        )


def _read_atlas(folder: Path) -> PrototypeAtlas:
    jfile, tfile = folder / "atlas.json", folder / "atlas.safetensors"
    for file in (jfile, tfile):
        if not file.is_file():
            raise MissingFileError(f"{file} not found; point to a folder written by save_atlas")
    meta = _read_json(jfile, "prototype atlas description")
    _check_format(meta, "PrototypeAtlas", jfile)
    names = _field(meta, "names", _strings, jfile, "a list of prototype names")
    concepts = _field(meta, "concepts", _strings, jfile, "a list of concept names")
    source_ids = _field(meta, "source_ids", _strings, jfile, "a list of sample ids")
    train_ids = _field(meta, "train_ids", _strings, jfile, "a list of sample ids")
    grid = _field(
        meta, "grid", lambda g: isinstance(g, list) and len(g) == 2 and all(map(_posint, g)),
        jfile, "two positive integers",
    )  # fmt: skip
    image_size = _field(meta, "image_size", _posint, jfile, "a positive integer")
    info = _field(meta, "info", lambda v: isinstance(v, dict), jfile, "an object")
    n = len(names)
    if n == 0 or len(set(names)) != n or len(concepts) != n or len(source_ids) != n:
        raise DataError(
            f"{jfile}: {n} prototype names ({n - len(set(names))} repeated), "
            f"{len(concepts)} concepts and {len(source_ids)} source ids must be one per "
            "prototype; the file was edited or damaged, save the atlas again"
        )
    arrays = _read_tensors(tfile, _ATLAS_TENSORS)
    vec = arrays["vectors"]
    if vec.ndim != 2 or len(vec) != n or vec.dtype != np.float32:
        raise DataError(
            f"{tfile}: tensor 'vectors' is {vec.dtype} {vec.shape}, expected float32 "
            f"({n}, D) for the {n} prototypes of {jfile.name}"
        )
    if not np.isfinite(vec).all() or not np.allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-3):
        raise DataError(f"{tfile}: tensor 'vectors' must hold finite unit vectors")
    for key in _ATLAS_TENSORS[1:]:
        if arrays[key].shape != (n,):
            raise DataError(f"{tfile}: tensor {key!r} has shape {arrays[key].shape}, not ({n},)")
    gh, gw = grid
    ss, sy, sx = arrays["source_sample"], arrays["source_y"], arrays["source_x"]
    n_train = len(train_ids) or int(ss.max()) + 1
    if (
        ss.min() < 0 or ss.max() >= n_train or sy.min() < 0 or sy.max() >= gh
        or sx.min() < 0 or sx.max() >= gw
    ):  # fmt: skip
        raise DataError(
            f"{tfile}: the prototypes' source patches lie outside the {n_train} training "
            f"images or the {gh}x{gw} grid of {jfile.name}; save the atlas again"
        )
    return PrototypeAtlas(
        vectors=vec,
        names=names,
        concepts=concepts,
        source_sample=ss,
        source_y=sy,
        source_x=sx,
        source_ids=source_ids,
        source_cosine=arrays["source_cosine"],
        wins=arrays["wins"],
        grid=(gh, gw),
        image_size=image_size,
        info=info,
        train_ids=train_ids,
    )


def load_atlas(path: str | os.PathLike[str], *, backbone: Any = None) -> PrototypeAtlas:
    """Read an atlas written by :func:`save_atlas`.

    Parameters
    ----------
    path : str or path
        The atlas folder.
    backbone : Backbone, optional
        The backbone the atlas will be used with: refused (``ConfigError``) when the atlas
        was built with another one (its weights fingerprint differs) or another input size.

    Returns
    -------
    PrototypeAtlas

    Raises
    ------
    MissingFileError
        ``atlas.json`` or ``atlas.safetensors`` is missing.
    DataError
        Either file is damaged or inconsistent; the message names the file and the field.

    Examples
    --------
    >>> atlas = load_atlas("runs/atlas", backbone=load_backbone())  # doctest: +SKIP
    """
    folder = user_path(path)
    atlas = _read_atlas(folder)
    _check_backbone(atlas, backbone, folder)
    return atlas


def save_prototype_classifier(model: Any, path: str | os.PathLike[str]) -> Path:
    """Write a fitted :class:`PrototypeClassifier` (atlas, head, refinement data) to ``path``.

    The folder holds the atlas (``atlas/``), the head (``head/``, as ``save_head``
    writes it) and what :meth:`~PrototypeClassifier.remove_prototypes` and concept
    rejection need (training activations and labels, typical-absent values), so a loaded
    classifier predicts, explains and refines as the saved one did.

    Parameters
    ----------
    model : fitted PrototypeClassifier
    path : str or path
        The folder (``~`` is expanded); replaced only if empty or holding an earlier
        classifier (``classifier.json``).

    Returns
    -------
    Path

    Examples
    --------
    >>> save_prototype_classifier(clf, "runs/protos")  # doctest: +SKIP
    >>> load_prototype_classifier("runs/protos").predict(P_test)  # doctest: +SKIP
    """
    from sklearn.utils.validation import check_is_fitted

    from conceptlens.heads import save_head
    from conceptlens.heads._io import _encode
    from conceptlens.spatial._classifier import PrototypeClassifier

    if not isinstance(model, PrototypeClassifier):
        raise ConfigError(
            f"save_prototype_classifier saves a PrototypeClassifier, got {type(model).__name__}"
        )
    check_is_fitted(model, "head_")
    out = _target(path, "classifier.json", "save_prototype_classifier")
    params = {
        k: _encode(v, f"PrototypeClassifier.{k}")
        for k, v in model.get_params(deep=False).items()
        if k not in ("atlas", "bank")
    }
    bank = model.bank if model.bank is None or isinstance(model.bank, str) else model.bank.id
    typical = model.typical_absent_
    # in their own dtype, so a loaded classifier refits exactly as the saved one would
    arrays = {"train_activations": np.asarray(model.train_activations_.values)}
    if typical is not None:
        arrays["typical_absent"] = np.asarray(typical.values)
    meta = {
        "format": _FORMAT,
        "kind": "PrototypeClassifier",
        "conceptlens_version": __version__,
        "params": params,
        "bank": bank,
        "prototypes": list(model.prototypes_),
        "typical_absent_prototypes": None
        if typical is None
        else list(typical["prototype"].values),
        "train_labels": _encode(np.asarray(model.train_labels_), "train_labels_"),
    }
    atlas = model.atlas
    if atlas is None:  # fitted classifiers always hold their atlas; a hand-edited one may not
        raise ConfigError("the classifier has no atlas (model.atlas is None); fit it again")
    with atomic_dir(out) as tmp:
        (tmp / "atlas").mkdir()
        _write_atlas(atlas, tmp / "atlas")
        save_head(model.head_, tmp / "head")
        _write_tensors(arrays, tmp / "classifier.safetensors")
        (tmp / "classifier.json").write_text(
            json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8"
        )
    return out


def load_prototype_classifier(path: str | os.PathLike[str], *, backbone: Any = None) -> Any:
    """Read a classifier written by :func:`save_prototype_classifier`; returns it fitted.

    Parameters
    ----------
    path : str or path
    backbone : Backbone, optional
        Checked against the atlas's backbone, as in :func:`load_atlas`.

    Returns
    -------
    PrototypeClassifier

    Examples
    --------
    >>> clf = load_prototype_classifier("runs/protos", backbone=bb)  # doctest: +SKIP
    """
    import xarray as xr

    from conceptlens.heads import ConceptBottleneckClassifier, load_head
    from conceptlens.heads._io import _decode
    from conceptlens.spatial._classifier import PrototypeClassifier

    folder = user_path(path)
    jfile, tfile = folder / "classifier.json", folder / "classifier.safetensors"
    for file in (jfile, tfile):
        if not file.is_file():
            raise MissingFileError(
                f"{file} not found; point to a folder written by save_prototype_classifier"
            )
    meta = _read_json(jfile, "prototype classifier description")
    _check_format(meta, "PrototypeClassifier", jfile)
    atlas = _read_atlas(folder / "atlas")
    _check_backbone(atlas, backbone, folder)
    head = load_head(folder / "head")
    if not isinstance(head, ConceptBottleneckClassifier):
        raise DataError(f"{folder / 'head'}: not the ConceptBottleneckClassifier of a classifier")
    params = _field(meta, "params", lambda v: isinstance(v, dict), jfile, "an object")
    known = set(PrototypeClassifier().get_params(deep=False)) - {"atlas", "bank"}
    if set(params) - known:
        raise DataError(f"{jfile}: unknown parameters {sorted(set(params) - known)[:5]}")
    try:
        decoded = {k: _decode(v, f"{jfile}: params.{k}") for k, v in params.items()}
        labels = np.asarray(_decode(meta.get("train_labels"), f"{jfile}: train_labels"))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{jfile}: cannot read the parameters or labels ({exc})") from None
    bank = meta.get("bank")
    if bank is not None and not isinstance(bank, str):
        raise DataError(f"{jfile}: field 'bank' must be a bank name or null")
    protos = _field(meta, "prototypes", _strings, jfile, "a list of prototype names")
    head_names = [str(c) for c in head.concept_names_]
    if not protos or head_names != protos or set(protos) - set(atlas.names):
        raise DataError(
            f"{jfile}: the prototypes {protos[:3]}... do not match the head's features "
            f"{head_names[:3]}... and the atlas; the folder was edited, save it again"
        )
    has_typical = meta.get("typical_absent_prototypes") is not None
    arrays = _read_tensors(tfile, _CLF_TENSORS + (("typical_absent",) if has_typical else ()))
    act = arrays["train_activations"]
    if act.ndim != 2 or act.shape[1] != len(protos) or len(labels) != len(act):
        raise DataError(
            f"{tfile}: training activations {act.shape} do not match {len(protos)} prototypes "
            f"and {len(labels)} training labels; save the classifier again"
        )
    if not np.isfinite(act).all():
        raise DataError(f"{tfile}: the training activations hold NaN or infinite values")
    model = PrototypeClassifier(atlas=atlas, bank=bank, **decoded)
    model._set_fitted(head, list(protos), act, labels)
    model.typical_absent_ = None
    if has_typical:
        names = _field(meta, "typical_absent_prototypes", _strings, jfile, "prototype names")
        typical = arrays["typical_absent"]
        if typical.shape != (len(names),) or not set(protos) <= set(names):
            raise DataError(f"{tfile}: tensor 'typical_absent' does not match the prototypes")
        model.typical_absent_ = xr.DataArray(
            typical, dims=("prototype",), coords={"prototype": names}
        )
    return model
