"""Concept scores: images x concept bank -> labelled ``concept_score`` DataArray.

The image embeddings are streamed block by block (``block_size`` samples at a time,
read from or written to the embedding cache), so the memory held is one block of
embeddings plus the (n_samples, n_concepts) result, whatever the dataset size. Scores of
one block are one matrix product; blocks start at fixed global offsets, which is what
makes the single-process and the Dask runs bit-identical.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from conceptlens._io import user_path
from conceptlens._progress import progress
from conceptlens._text import fills_once
from conceptlens.exceptions import ConfigError, DataError

__all__ = [
    "ConceptStandardizer",
    "concept_text_embeddings",
    "embed_images",
    "score_concepts",
    "write_scores",
]

_MODES = ("cosine", "relative", "presence")
_RESERVED = ("sample", "concept", "concept_group", "concept_source")
DEFAULT_BLOCK_SIZE = 4096


# --------------------------------------------------------------------------- text side
def _resolve_templates(backbone: Any, bank: Any, templates: Sequence[str] | None) -> list[str]:
    if templates is not None:
        tpls = list(templates)
    elif tuple(getattr(bank, "templates", ("{}",))) != ("{}",):
        tpls = list(bank.templates)
    else:
        tpls = list(backbone.config.templates)
    for t in tpls:
        if not fills_once(t):
            raise ConfigError(
                f"prompt template {t!r} must be a string containing '{{}}' once and no other "
                "braces (write a literal brace as '{{' or '}}')"
            )
    return tpls


def _ensembles(
    backbone: Any, groups: Sequence[Sequence[str]], templates: Sequence[str], cache: Any
) -> np.ndarray:
    """Per group of prompts: the mean of the L2-normalised embeddings of every prompt x
    template, renormalised; (n_groups, D).

    Every group's prompts go to the backbone in one call, so the text tower sees full
    batches and the user sees one progress bar, not one per concept.
    """
    flat = [p for g in groups for p in g]
    per_prompt = backbone.encode_text(flat, templates=templates, normalize=False, cache=cache)
    if len(templates) == 1:  # encode_text skipped the per-template normalisation
        per_prompt = per_prompt / np.linalg.norm(per_prompt, axis=1, keepdims=True)
    out = np.empty((len(groups), per_prompt.shape[1]), np.float32)
    start = 0
    for i, g in enumerate(groups):
        mean = per_prompt[start : start + len(g)].mean(axis=0, dtype=np.float64)
        out[i] = mean / np.linalg.norm(mean)
        start += len(g)
    return out


def concept_text_embeddings(
    backbone: Any,
    bank: Any,
    *,
    templates: Sequence[str] | None = None,
    reference: bool = False,
    cache: Any = None,
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Text embeddings of every concept (and of the bank's reference prompts).

    Each concept's embedding is the renormalised mean over its prompts x templates. The
    backbone encodes each templated prompt once (in memory, and in ``cache`` if given).

    Returns
    -------
    concepts : numpy.ndarray
        float32, (n_concepts, D), unit norm.
    reference : numpy.ndarray or None
        float32, (D,), unit norm, when ``reference`` is True.
    templates : list of str
        The templates used (argument, else the bank's, else the backbone's).
    """
    tpls = _resolve_templates(backbone, bank, templates)

    groups = [list(c.prompts) for c in bank.concepts]
    prompts: list[str] = []
    if reference:
        prompts = list(getattr(bank, "reference_prompts", ()) or ())
        if not prompts:
            raise ConfigError(
                f"bank {bank.id!r} has no reference_prompts, which mode='relative' needs; add "
                "e.g. reference_prompts: ['a dermoscopy image of skin'] to the bank file or use "
                "mode='cosine'"
            )
        groups.append(prompts)
    emb = _ensembles(backbone, groups, tpls, cache)
    if reference:
        return emb[:-1], emb[-1], tpls
    return emb, None, tpls


def _template_hash(bank: Any, tpls: Sequence[str], mode: str) -> str:
    payload = {
        "templates": list(tpls),
        "prompts": {c.name: list(c.prompts) for c in bank.concepts},
        "reference_prompts": list(bank.reference_prompts) if mode != "cosine" else [],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- image side
def embed_images(
    backbone: Any,
    images: Any,
    *,
    cache: Any = None,
    batch_size: int | None = None,
    indices: np.ndarray | None = None,
    num_workers: int | None = None,
) -> np.ndarray:
    """Embeddings of ``images`` (or of ``images[indices]``) through ``cache`` if given.

    The same as ``backbone.encode_images(images, cache=cache, ...)``
    (:meth:`conceptlens.backbones.Backbone.encode_images`): cached images are read, not
    encoded; missing ones are encoded in batches and appended to the cache after every
    batch (so an interrupted run keeps its progress).

    Returns
    -------
    numpy.ndarray
        float32, (n, D), unit norm.

    Examples
    --------
    >>> emb = embed_images(load_backbone("synthderm-lit"), ds, cache="cache/")
    ... # doctest: +SKIP
    """
    return backbone.encode_images(
        images, cache=cache, batch_size=batch_size, indices=indices, num_workers=num_workers
    )


def _score_range(
    backbone: Any,
    dataset: Any,
    start: int,
    stop: int,
    text: np.ndarray,
    ref: np.ndarray | None,
    *,
    cache: Any,
    batch_size: int | None,
    block_size: int,
    num_workers: int | None,
    show_progress: bool,
) -> np.ndarray:
    """Scores of samples [start, stop); ``start`` must be a multiple of ``block_size``."""
    from conceptlens.backbones import as_image_source

    out = np.empty((stop - start, text.shape[0]), np.float32)
    weights = _concept_weights(text, ref)
    source = as_image_source(dataset)  # once for every block
    store = backbone.open_cache(cache) if cache is not None else None
    blocks = range(start, stop, block_size)
    it = progress(blocks, total=len(blocks), desc="scoring") if show_progress else blocks
    for b0 in it:
        b1 = min(stop, b0 + block_size)
        emb = backbone.encode_images(
            source,
            cache=store,
            batch_size=batch_size,
            indices=np.arange(b0, b1),
            num_workers=num_workers,
        )
        _block_scores(emb, weights, out=out[b0 - start : b1 - start])
    return out


def _concept_weights(text: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
    """(D, n_concepts) so that scores = emb @ W: cos(e, t) - cos(e, r) = e . (t - r)."""
    w = text if ref is None else text - ref[None, :]
    return np.ascontiguousarray(w.T, dtype=np.float32)


def _block_scores(
    emb: np.ndarray, weights: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Scores of one block: a single matrix product (written into ``out`` if given)."""
    return np.matmul(emb, weights, out=out)


def _names(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(str(x)) for x in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _check_finite_text(
    text: np.ndarray, ref: np.ndarray | None, names: Sequence[str], backbone: Any
) -> None:
    """Refuse NaN/infinite concept embeddings before any image is encoded."""
    bad = [str(names[int(i)]) for i in np.flatnonzero(~np.isfinite(text).all(axis=1))]
    if ref is not None and not np.isfinite(ref).all():
        bad.append("<reference prompts>")
    if bad:
        raise DataError(
            f"backbone {backbone.name!r} gives non-finite text embeddings for concepts "
            f"{_names(bad)}; its weights are damaged or unsuitable (check them with "
            f"`conceptlens backbone check {backbone.name}`). No scores were written."
        )


def _check_finite_scores(
    values: np.ndarray, ids: Sequence[str], names: Sequence[str], backbone: Any
) -> None:
    """Refuse to return NaN/infinite scores; name the concepts and samples affected."""
    finite = np.isfinite(values)
    if finite.all():
        return
    rows = np.flatnonzero(~finite.all(axis=1))
    cols = np.flatnonzero(~finite.all(axis=0))
    raise DataError(
        f"backbone {backbone.name!r} produced non-finite concept scores for "
        f"{len(rows)} of {len(values)} samples ({_names([ids[int(i)] for i in rows])}) and "
        f"{len(cols)} concepts ({_names([names[int(j)] for j in cols])}); the image embeddings "
        "are NaN or infinite, so the weights or these images are damaged. No scores were "
        "written."
    )


class _FiniteBlockCheck:
    """Picklable ``map_blocks`` function: a block of dask scores, checked for NaN/inf."""

    def __init__(self, ids: Sequence[str], names: Sequence[str], backbone_name: str) -> None:
        self.ids = list(ids)
        self.names = list(names)
        self.backbone_name = backbone_name

    def __call__(self, block: np.ndarray, block_info: Any = None) -> np.ndarray:
        start, stop = (0, len(block))
        if isinstance(block_info, dict) and 0 in block_info:
            start, stop = block_info[0]["array-location"][0]
        who = type("_Named", (), {"name": self.backbone_name})()
        _check_finite_scores(block, self.ids[start:stop], self.names, who)
        return block


# --------------------------------------------------------------------------- labelling
def _sample_coords(dataset: Any, n: int) -> tuple[list[str], dict[str, Any]]:
    ids = list(getattr(dataset, "ids", [])) or [f"img{i:06d}" for i in range(n)]
    coords: dict[str, Any] = {}
    meta = getattr(dataset, "metadata", None)
    if meta is not None and len(meta.columns):
        meta = meta.reindex(ids)
        for col in meta.columns:
            name = str(col)
            if name in _RESERVED:
                name = f"meta_{name}"
            values = meta[col].to_numpy()
            if values.dtype == object:
                values = np.array(["" if v is None else str(v) for v in values], dtype=str)
            coords[name] = ("sample", values)
    return ids, coords


def _label(
    values: Any,
    *,
    ids: list[str],
    sample_coords: dict[str, Any],
    bank: Any,
    backbone: Any,
    tpls: list[str],
    mode: str,
    temperature: float = 0.0,
) -> xr.DataArray:
    sources = [str(dict(c.provenance).get("kind", "")) for c in bank.concepts]
    return xr.DataArray(
        values,
        dims=("sample", "concept"),
        coords={
            "sample": np.array(ids, dtype=str),
            **sample_coords,
            "concept": np.array(bank.names, dtype=str),
            "concept_group": ("concept", np.array(bank.groups, dtype=str)),
            "concept_source": ("concept", np.array(sources, dtype=str)),
        },
        name="concept_score",
        attrs={
            "backbone": backbone.name,
            "backbone_fingerprint": backbone.fingerprint,
            "bank_id": bank.id,
            "bank_version": bank.version,
            "bank_fingerprint": bank.fingerprint,
            "bank_classes": json.dumps(list(bank.classes)),  # the label check of `fit`
            "template_hash": _template_hash(bank, tpls, mode),
            "templates": json.dumps(tpls),
            "score_mode": mode,
            "reference_prompts": json.dumps(list(bank.reference_prompts))
            if mode != "cosine"
            else "[]",
            **({"temperature": temperature} if mode == "presence" else {}),
        },
    )


# --------------------------------------------------------------------------- entry point
def score_concepts(
    backbone: Any,
    dataset: Any,
    bank: Any,
    *,
    mode: str = "cosine",
    temperature: float = 0.01,
    cache: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    templates: Sequence[str] | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    num_workers: int | None = None,
    client: Any = None,
    show_progress: bool = True,
) -> xr.DataArray:
    """Score every concept of ``bank`` on every image of ``dataset``.

    ``cosine``: cosine similarity between the image embedding and the concept embedding
    (the renormalised mean over the concept's prompts x templates). ``relative``: that
    cosine minus the image's cosine with the bank's ``reference_prompts`` (a neutral
    prompt such as "a dermoscopy image of skin"). ``presence`` (MONET): the two-way
    softmax of the concept prompt against the reference prompts at ``temperature``,
    ``exp(c/T) / (exp(c/T) + exp(r/T))`` with c, r the image's cosines with the concept
    and the reference, i.e. ``sigmoid(relative / T)``: a probability-like score in (0, 1).

    Parameters
    ----------
    backbone : Backbone or str
        A loaded backbone or anything :func:`~conceptlens.backbones.load_backbone` takes.
    dataset : ImageDataset, uint8 array (N, H, W, 3) or list of PIL images
    bank : ConceptBank or str
        A bank or anything :func:`load_bank` takes.
    mode : {"cosine", "relative", "presence"}
    temperature : float, default 0.01
        Softmax temperature of ``presence`` (0.01 = CLIP's logit scale of 100, as MONET).
    cache : path, optional
        Embedding cache folder; cached images are not re-encoded.
    batch_size : int, optional
        Images per forward pass (default: chosen to fit memory).
    templates : list of str, optional
        Prompt templates; default: the bank's if it sets any, else the backbone's.
    block_size : int, default 4096
        Samples per scoring block (memory held at once). Results are bit-identical
        between runs with the same ``block_size`` and ``batch_size``, sharded or not.
    client : dask.distributed.Client, optional
        Shard the dataset across the cluster's workers (each loads the backbone once and
        writes its shard to ``cache``); the result is dask-backed.

    Returns
    -------
    xarray.DataArray
        ``concept_score``, float32, dims ``("sample", "concept")``; coords ``sample``
        (ids) and every metadata column, ``concept``, ``concept_group``,
        ``concept_source``; attrs ``backbone``, ``bank_id``, ``bank_version``,
        ``template_hash``, ``score_mode``...

    Examples
    --------
    >>> scores = score_concepts("synthderm-lit", ds, "synthderm", mode="relative")
    ... # doctest: +SKIP
    >>> scores.sel(concept="ruler").values[:3]  # doctest: +SKIP
    """
    from conceptlens.backbones import Backbone, as_image_source, load_backbone
    from conceptlens.concepts._bank import load_bank

    if mode not in _MODES:
        raise ConfigError(f"mode {mode!r} is not one of {_MODES}")
    if mode == "presence" and not (np.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"temperature must be a positive number, got {temperature!r}")
    if int(block_size) <= 0:
        raise ConfigError(f"block_size must be positive, got {block_size}")
    block_size = int(block_size)
    if not isinstance(backbone, Backbone):
        backbone = load_backbone(backbone, batch_size=batch_size)
    bank = load_bank(bank)
    source = as_image_source(dataset)
    n = len(source)
    if n == 0:
        raise DataError("the dataset is empty; nothing to score")
    text, ref, tpls = concept_text_embeddings(
        backbone, bank, templates=templates, reference=mode != "cosine", cache=cache
    )
    _check_finite_text(text, ref, bank.names, backbone)
    ids, sample_coords = _sample_coords(dataset, n)
    if client is not None:
        values = _score_on_cluster(
            client,
            backbone,
            dataset,
            n,
            text,
            ref,
            cache=None if cache is None else str(user_path(cache).resolve()),
            batch_size=batch_size,
            block_size=block_size,
        )
        # checked when computed, before anything can be written
        values = values.map_blocks(
            _FiniteBlockCheck(ids, list(bank.names), backbone.name), dtype=values.dtype
        )
    else:
        values = _score_range(
            backbone,
            source,
            0,
            n,
            text,
            ref,
            cache=cache,
            batch_size=batch_size,
            block_size=block_size,
            num_workers=num_workers,
            show_progress=show_progress,
        )
        _check_finite_scores(values, ids, bank.names, backbone)
    if mode == "presence":  # sigmoid(relative / T), overflow-free (works on dask too)
        values = (0.5 * (1.0 + np.tanh(values / (2.0 * temperature)))).astype(np.float32)
    return _label(
        values,
        ids=ids,
        sample_coords=sample_coords,
        bank=bank,
        backbone=backbone,
        tpls=tpls,
        mode=mode,
        temperature=float(temperature),
    )


def write_scores(scores: xr.DataArray, path: str | os.PathLike[str]) -> Path:
    """Write a ``concept_score`` DataArray atomically: ``.nc`` netCDF4 or ``.zarr`` zarr.

    The file appears complete or not at all (written next to its final name, then
    renamed); an existing output is replaced only once the new one is in place.

    Parameters
    ----------
    scores : xarray.DataArray
        What :func:`score_concepts` returns.
    path : path
        Output file ending in ``.nc`` or folder ending in ``.zarr``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ConfigError
        ``path`` ends in neither ``.nc`` nor ``.zarr``.

    Examples
    --------
    >>> import tempfile
    >>> scores = xr.DataArray(np.zeros((2, 1), np.float32), dims=("sample", "concept"),
    ...                       coords={"sample": ["a", "b"], "concept": ["ruler"]},
    ...                       name="concept_score")
    >>> out = write_scores(scores, Path(tempfile.mkdtemp()) / "scores.nc")
    >>> xr.load_dataarray(out).sizes["sample"]
    2
    """
    from conceptlens._io import atomic_dir, atomic_path

    out = user_path(path)
    suffix = out.suffix.lower()
    if suffix == ".nc" and out.is_dir():
        raise ConfigError(
            f"{out} is a folder; scores.nc is written as a file, choose another path"
        )
    is_store = any((out / marker).exists() for marker in (".zgroup", "zarr.json", ".zattrs"))
    if suffix == ".zarr" and out.is_dir() and any(out.iterdir()) and not is_store:
        raise ConfigError(
            f"{out} is a folder that holds other files and no zarr store; writing the scores "
            "replaces the whole folder, so choose a new or empty folder"
        )
    if suffix == ".zarr" and out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; .zarr scores are written as a folder")
    if suffix == ".nc":
        with atomic_path(out) as tmp:
            scores.to_netcdf(tmp)
    elif suffix == ".zarr":
        with atomic_dir(out) as tmp:
            # zarr format 2: string coords have a stable spec there (readable by every zarr)
            scores.to_dataset().to_zarr(tmp, mode="w", zarr_format=2)
    else:
        raise ConfigError(f"{out}: scores are written as .nc (netCDF) or .zarr; use one of them")
    return out


# --------------------------------------------------------------------------- standardiser
class ConceptStandardizer(TransformerMixin, BaseEstimator):
    """Per-concept standardisation fitted on a training split, applied to any split.

    ``z = (score - mean_) / scale_`` with the mean and (population) standard deviation
    of each concept over the training samples. Constant concepts get ``scale_ = 1``.

    Parameters
    ----------
    with_mean : bool, default True
    with_std : bool, default True

    Attributes
    ----------
    mean_ : numpy.ndarray (n_concepts,)
    scale_ : numpy.ndarray (n_concepts,)
    concepts_ : numpy.ndarray of str or None
        Concept names seen in ``fit`` (DataArray input); ``transform`` aligns on them.

    Examples
    --------
    >>> std = ConceptStandardizer().fit(train_scores)  # doctest: +SKIP
    >>> z_test = std.transform(test_scores)  # doctest: +SKIP
    """

    def __init__(self, *, with_mean: bool = True, with_std: bool = True) -> None:
        self.with_mean = with_mean
        self.with_std = with_std

    @staticmethod
    def _values(X: Any) -> np.ndarray:
        from sklearn.utils import check_array

        if isinstance(X, xr.DataArray):
            if X.dims != ("sample", "concept"):
                X = X.transpose("sample", "concept")
            if X.sizes["sample"] == 0:
                raise DataError(
                    "the scores hold 0 samples; the selection matched nothing: check the "
                    "site, split or label value it was made with."
                )
            bad = ~np.isfinite(np.asarray(X.values, dtype=float))
            if bad.any():
                rows, cols = np.flatnonzero(bad.any(axis=1)), np.flatnonzero(bad.any(axis=0))
                raise DataError(
                    f"the scores hold {int(bad.sum())} NaN or infinite value(s) in "
                    f"{len(rows)} sample(s) {[str(v) for v in X['sample'].values[rows[:5]]]}, "
                    f"in concept(s) {[str(v) for v in X['concept'].values[cols[:5]]]}; drop "
                    "those samples (scores.dropna('sample')) or rescore the images."
                )
            X = X.values
        return check_array(X, dtype=[np.float64, np.float32])

    def fit(self, X: Any, y: Any = None) -> ConceptStandardizer:
        """Learn per-concept mean and scale from the training scores ``X``."""
        values = self._values(X)
        self.n_features_in_ = values.shape[1]
        self.concepts_ = (
            np.asarray(X["concept"].values, dtype=str) if isinstance(X, xr.DataArray) else None
        )
        mean = values.mean(axis=0, dtype=np.float64)
        std = values.std(axis=0, dtype=np.float64)
        self.mean_ = mean if self.with_mean else np.zeros_like(mean)
        self.scale_ = np.where(std > 0, std, 1.0) if self.with_std else np.ones_like(std)
        return self

    def _check(self, X: Any) -> Any:
        if not hasattr(self, "mean_"):
            raise NotFittedError(
                "This ConceptStandardizer is not fitted yet; call fit(train_scores) first."
            )
        if isinstance(X, xr.DataArray) and self.concepts_ is not None:
            names = [str(c) for c in X["concept"].values]
            missing = sorted(set(map(str, self.concepts_)) - set(names))
            if missing:
                raise DataError(
                    f"scores lack {len(missing)} concept(s) the standardiser was fitted on: "
                    f"{missing[:10]}{' ...' if len(missing) > 10 else ''}; score them with the "
                    "same bank"
                )
            X = X.sel(concept=list(self.concepts_))
        return X

    def transform(self, X: Any) -> Any:
        """Standardise ``X`` (same type back: DataArray keeps its coords and attrs)."""
        X = self._check(X)
        values = self._values(X)
        if values.shape[1] != self.n_features_in_:
            raise DataError(
                f"X has {values.shape[1]} concepts, the standardiser was fitted on "
                f"{self.n_features_in_}"
            )
        z = ((values - self.mean_) / self.scale_).astype(values.dtype, copy=False)
        if isinstance(X, xr.DataArray):
            out = X.transpose("sample", "concept").copy(data=z)
            out.attrs = {**X.attrs, "standardized": 1}
            return out
        return z

    def inverse_transform(self, X: Any) -> Any:
        """Undo :meth:`transform`."""
        X = self._check(X)
        values = self._values(X)
        raw = (values * self.scale_ + self.mean_).astype(values.dtype, copy=False)
        if isinstance(X, xr.DataArray):
            out = X.transpose("sample", "concept").copy(data=raw)
            out.attrs = {k: v for k, v in X.attrs.items() if k != "standardized"}
            return out
        return raw


# --------------------------------------------------------------------------- Dask path
_WORKER_LOCK = threading.Lock()
_WORKER_BACKBONES: dict[str, Any] = {}


def shard_bounds(n: int, n_workers: int, step: int) -> list[tuple[int, int]]:
    """Shards of ``[0, n)`` made of whole ``step``-sized blocks, about one per worker."""
    units = math.ceil(n / step)
    per = max(1, math.ceil(units / max(1, n_workers)))
    size = per * step
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _take(dataset: Any, start: int, stop: int) -> Any:
    if hasattr(dataset, "subset"):
        return dataset.subset(np.arange(start, stop))
    if isinstance(dataset, np.ndarray):
        return dataset[None] if dataset.ndim == 3 else dataset[start:stop]
    return list(dataset)[start:stop]


def _worker_backbone(payload: Any, spec: dict[str, Any] | None, fingerprint: str) -> Any:
    """The backbone on this worker process, loaded once and kept for later shards."""
    if spec is None:
        backbone = payload  # scattered to every worker once (broadcast)
    else:
        key = json.dumps(spec, sort_keys=True, default=str)
        with _WORKER_LOCK:
            if key not in _WORKER_BACKBONES:
                from conceptlens.backbones import load_backbone

                _WORKER_BACKBONES[key] = load_backbone(**spec)
            backbone = _WORKER_BACKBONES[key]
    if backbone.fingerprint != fingerprint:
        raise ConfigError(
            f"the backbone loaded on a Dask worker ({backbone.fingerprint}) differs from the "
            f"client's ({fingerprint}); install the same weights on every worker"
        )
    return backbone


def _score_shard(
    payload: Any,
    spec: dict[str, Any] | None,
    fingerprint: str,
    shard: Any,
    n: int,
    text: np.ndarray,
    ref: np.ndarray | None,
    cache: str | None,
    batch_size: int | None,
    block_size: int,
) -> np.ndarray:
    backbone = _worker_backbone(payload, spec, fingerprint)
    return _score_range(
        backbone,
        shard,
        0,
        n,
        text,
        ref,
        cache=cache,
        batch_size=batch_size,
        block_size=block_size,
        num_workers=0,
        show_progress=False,
    )


def _score_on_cluster(
    client: Any,
    backbone: Any,
    dataset: Any,
    n: int,
    text: np.ndarray,
    ref: np.ndarray | None,
    *,
    cache: str | None,
    batch_size: int | None,
    block_size: int,
) -> Any:
    """Dask array (n, n_concepts) of scores, one shard per worker, persisted on ``client``."""
    import dask
    import dask.array as da

    spec = getattr(backbone, "spec", None)
    fingerprint = backbone.fingerprint
    if spec is not None and spec.get("pretrained", True):
        payload = None  # each worker loads it by name/path, once per process
        spec = {**spec, "precision": backbone.precision}
    else:  # random weights or a hand-built backbone: ship the object, once per worker
        payload = client.scatter(backbone, broadcast=True)
        spec = None
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    parts = []
    for s0, s1 in shard_bounds(n, n_workers, block_size):
        task = dask.delayed(_score_shard, pure=False)(
            payload,
            spec,
            fingerprint,
            _take(dataset, s0, s1),
            s1 - s0,
            text,
            ref,
            cache,
            batch_size,
            block_size,
        )
        parts.append(da.from_delayed(task, shape=(s1 - s0, text.shape[0]), dtype=np.float32))
    return client.persist(da.concatenate(parts, axis=0))
