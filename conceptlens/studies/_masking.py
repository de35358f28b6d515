"""``masking_study``: the Mask of truth protocol (train on each ROI condition, test on each)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError, UnknownNameError
from conceptlens.studies._audit import audit, provenance
from conceptlens.studies._regions import CONDITIONS, FILLS, mask_images

__all__ = ["MASKING_MODELS", "masking_study"]

MASKING_MODELS = ("concept_head", "linear_probe")


def _load(dataset: Any, roi: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, list[str]]:
    names = list(getattr(dataset, "mask_names", []) or [])
    if roi not in names:
        raise UnknownNameError(
            f"the dataset has no mask {roi!r}; its masks are {names}. Pass roi=<mask name> "
            "(SynthDerm: 'lesion_mask'; manifests: the mask column's name)."
        )
    images, masks = [], []
    for i in range(len(dataset)):
        s = dataset[i]
        images.append(s.image)
        masks.append(s.masks[roi])
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"images have {len(shapes)} different sizes ({sorted(shapes)[:3]}...); the "
            "masking study needs one size: resize the images (and masks) first."
        )
    meta = dataset.metadata.reset_index()
    return np.stack(images), np.stack(masks).astype(bool), meta, list(dataset.ids)


def _default_encoder(backbone: Any, bank: Any, cache: Any) -> Callable:
    from conceptlens.backbones import load_backbone
    from conceptlens.concepts import embed_images, score_concepts

    bb = load_backbone(backbone) if isinstance(backbone, str) else backbone

    def encode(ds: Any) -> tuple[xr.DataArray, np.ndarray]:
        # scoring fills the embedding cache, so the embeddings are read back, not re-encoded
        scores = score_concepts(bb, ds, bank, mode="relative", cache=cache)
        return scores, embed_images(bb, ds, cache=cache)

    return encode


def _onehot(meta: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    parts = []
    for col in columns:
        if col not in meta.columns:
            raise UnknownNameError(
                f"unknown metadata column {col!r} for the metadata-only baseline; available "
                f"columns: {sorted(map(str, meta.columns))}."
            )
        parts.append(pd.get_dummies(meta[col].astype(str), prefix=col).to_numpy(float))
    return np.hstack(parts) if parts else np.zeros((len(meta), 0))


def _positions(sel: Any, n: int, name: str) -> np.ndarray | None:
    """``train``/``test`` as sorted unique positions: a boolean mask of ``n`` or positions."""
    if sel is None:
        return None
    arr = np.asarray(sel)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise DataError(
                f"{name}: boolean mask of shape {arr.shape}, the dataset has {n} images."
            )
        return np.flatnonzero(arr)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise DataError(
            f"{name} must be integer positions or a boolean mask of {n} images, got "
            f"{arr.dtype} of shape {arr.shape}."
        )
    arr = arr.astype(np.int64)
    if arr.size == 0:
        raise DataError(f"{name} selects no image; pass at least one position per class.")
    if arr.min() < 0 or arr.max() >= n:
        raise DataError(f"{name}: positions outside 0..{n - 1} (the dataset has {n} images).")
    if np.unique(arr).size != arr.size:
        raise DataError(f"{name} repeats positions; pass each image once.")
    return arr


def masking_study(
    dataset: Any,
    *,
    roi: str = "roi_mask",
    train: Any = None,
    test: Any = None,
    conditions: Sequence[str] = CONDITIONS,
    fill: str = "black",
    dilations: Sequence[int] = (0,),
    models: Sequence[str] = MASKING_MODELS,
    metadata_columns: Sequence[str] = (),
    backbone: Any = "synthderm-lit",
    bank: Any = "synthderm",
    cache: Any = None,
    encoder: Callable | None = None,
    concept_head: Any = None,
    probe_C: float = 0.1,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> xr.Dataset:
    """Train on each ROI condition, evaluate on each: the Mask of truth grid.

    For every dilation and every pair (training condition, evaluation condition), a
    concept head (on the bank's concept scores) and a linear probe (on the image
    embeddings) are fitted on the ``train`` images under the training condition and
    evaluated on the ``test`` images under the evaluation condition; per-class AUROC
    with stratified bootstrap intervals comes from :func:`audit`.  A model trained
    without the ROI that stays well above chance reads something outside the ROI.

    Parameters
    ----------
    dataset : ImageDataset
        Labelled images with the ROI as a mask (``SynthDerm(...).generate(n).to_dataset()``
        or a manifest with a mask column); all images of one size.
    roi : str, default="roi_mask"
        Name of the ROI mask (SynthDerm: ``"lesion_mask"``).
    train, test : array of positions or boolean mask, optional
        Default: a stratified 70/30 split of all images (seeded); given one, the other
        is the rest of the images.  They must not share an image.
    conditions : sequence of str
        Any of ``full``, ``no_roi``, ``no_roi_bb``, ``only_roi``, ``only_roi_bb``.
    fill : {"black", "mean", "blur", "inpaint"}, default="black"
        How removed pixels are filled (:func:`mask_images`).
    dilations : sequence of int, default=(0,)
        ROI dilation (negative: erosion) in pixels; the grid is run for each.
    models : sequence of {"concept_head", "linear_probe"}
    metadata_columns : sequence of str
        Columns of the metadata-only baseline (a linear model on their one-hot codes).
    backbone, bank, cache
        Encoder of the default pipeline: concept scores (``mode="relative"``) and
        embeddings of every condition's images, through the embedding cache (a
        temporary one when ``cache`` is None, so each image is encoded once).
    encoder : callable, optional
        ``encoder(ImageDataset) -> (concept scores DataArray, embeddings array)``
        instead of the backbone and bank.
    concept_head : estimator, optional
        Unfitted concept head (default ``ConceptBottleneckClassifier(C=1.0)``); cloned
        per training condition.
    probe_C : float, default=0.1
        Inverse regularisation of the linear probe.
    n_boot, ci, seed
        Bootstrap of the intervals (:func:`audit`).

    Returns
    -------
    xr.Dataset
        ``auroc`` (model, dilation, train_condition, eval_condition, class, stat),
        ``macro_auroc`` and ``accuracy`` (model, dilation, train_condition,
        eval_condition, stat), ``roi_fraction`` (dilation, condition): mean fraction of
        the image removed; with metadata columns, ``metadata_auroc`` (class, stat) and
        ``metadata_macro_auroc`` (stat).  attrs: fill, roi, n_train, n_test, seed,
        provenance of the scores.
    """
    from sklearn.base import clone
    from sklearn.model_selection import train_test_split

    from conceptlens.data import ImageDataset
    from conceptlens.heads import ConceptBottleneckClassifier, LinearProbe

    bad = [c for c in conditions if c not in CONDITIONS]
    if bad or not conditions:
        raise ConfigError(f"unknown conditions {bad}; conditions are {list(CONDITIONS)}.")
    if fill not in FILLS:
        raise ConfigError(f"unknown fill {fill!r}; fills are {list(FILLS)}.")
    bad = [m for m in models if m not in MASKING_MODELS]
    if bad or not models:
        raise ConfigError(f"unknown models {bad}; models are {list(MASKING_MODELS)}.")
    images, masks, meta, ids = _load(dataset, roi)
    labels = np.asarray(dataset.labels)
    classes = [str(c) for c in dataset.classes]
    y = np.asarray(classes, dtype=object)[labels]
    n = len(y)
    train, test = _positions(train, n, "train"), _positions(test, n, "test")
    if train is None and test is None:
        train, test = train_test_split(np.arange(n), test_size=0.3, stratify=y, random_state=seed)
    elif train is None or test is None:  # the other half is the rest of the images
        rest = np.setdiff1d(np.arange(n), train if test is None else test)
        train, test = (train, rest) if test is None else (rest, test)
    train, test = np.sort(train), np.sort(test)
    both = np.intersect1d(train, test)
    if both.size:
        raise DataError(
            f"train and test share {both.size} image(s) (positions {both[:5].tolist()}); "
            "evaluate on images the heads were not fitted on."
        )
    tmp = None
    if encoder is None:
        if cache is None:
            tmp = tempfile.TemporaryDirectory(prefix="conceptlens-masking-")
            cache = tmp.name
        encoder = _default_encoder(backbone, bank, cache)
    head0 = concept_head if concept_head is not None else ConceptBottleneckClassifier(C=1.0)
    feats: dict[tuple[int, str], tuple[xr.DataArray, np.ndarray]] = {}
    roi_fraction = np.zeros((len(dilations), len(conditions)))
    attrs_src = None
    try:
        for di, d in enumerate(dilations):
            for ci_, cond in enumerate(conditions):
                if cond == "full" and di > 0:
                    feats[(di, cond)] = feats[(0, cond)]
                    continue
                imgs = mask_images(images, masks, cond, fill=fill, dilation=int(d))
                roi_fraction[di, ci_] = float(np.mean(np.any(imgs != images, axis=-1)))
                frame = meta.drop(columns=["id"], errors="ignore")
                ds = ImageDataset.from_arrays(
                    imgs, frame, label_column=dataset.label_column, classes=classes, ids=ids
                )
                scores, emb = encoder(ds)
                attrs_src = attrs_src if attrs_src is not None else scores
                feats[(di, cond)] = (scores, np.asarray(emb))
    finally:
        if tmp is not None:
            tmp.cleanup()
    probas: dict[str, np.ndarray] = {}
    keys = []
    for di in range(len(dilations)):
        for tc in conditions:
            s_tr, e_tr = feats[(di, tc)]
            fitted = {}
            if "concept_head" in models:
                fitted["concept_head"] = clone(head0).fit(s_tr.isel(sample=train), y[train])
            if "linear_probe" in models:
                fitted["linear_probe"] = LinearProbe(C=probe_C).fit(e_tr[train], y[train])
            for ec in conditions:
                s_te, e_te = feats[(di, ec)]
                for m, est in fitted.items():
                    x = s_te.isel(sample=test) if m == "concept_head" else e_te[test]
                    p = est.predict_proba(x)
                    order = [list(map(str, est.classes_)).index(c) for c in classes]
                    key = f"{m}|{di}|{tc}|{ec}"
                    probas[key] = np.asarray(p)[:, order]
                    keys.append((m, di, tc, ec))
    if metadata_columns:
        x = _onehot(meta, metadata_columns)
        base = LinearProbe(C=1.0).fit(x[train], y[train])
        order = [list(map(str, base.classes_)).index(c) for c in classes]
        probas["metadata"] = np.asarray(base.predict_proba(x[test]))[:, order]
    res = audit(
        probas, labels=y[test], metadata=pd.DataFrame(index=range(len(test))), split=None,
        classes=classes, pairs=[], n_boot=n_boot, ci=ci, seed=seed,
    )  # fmt: skip
    shape = (len(models), len(dilations), len(conditions), len(conditions))
    auroc = np.full((*shape, len(classes), 3), np.nan)
    macro = np.full((*shape, 3), np.nan)
    acc = np.full((*shape, 3), np.nan)
    cm = res.class_metrics.sel(split="all", group="all", class_metric="auroc")
    mm = res.metrics.sel(split="all", group="all")
    for m, di, tc, ec in keys:
        key = f"{m}|{di}|{tc}|{ec}"
        at = (list(models).index(m), di, list(conditions).index(tc), list(conditions).index(ec))
        auroc[at] = cm.sel(model=key).transpose("class", "stat").values
        macro[at] = mm.sel(model=key, metric="auroc").values
        acc[at] = mm.sel(model=key, metric="accuracy").values
    grid = ("model", "dilation", "train_condition", "eval_condition")
    data = {
        "auroc": ((*grid, "class", "stat"), auroc),
        "macro_auroc": ((*grid, "stat"), macro),
        "accuracy": ((*grid, "stat"), acc),
        "roi_fraction": (("dilation", "condition"), roi_fraction),
    }
    if metadata_columns:
        data["metadata_auroc"] = (
            ("class", "stat"),
            cm.sel(model="metadata").transpose("class", "stat").values,
        )
        data["metadata_macro_auroc"] = (("stat",), mm.sel(model="metadata", metric="auroc").values)
    return xr.Dataset(
        data,
        coords={
            "model": list(models),
            "dilation": [int(d) for d in dilations],
            "train_condition": list(conditions),
            "eval_condition": list(conditions),
            "condition": list(conditions),
            "class": classes,
            "stat": ["estimate", "ci_low", "ci_high"],
        },
        attrs={
            "protocol": "Mask of truth: train on each ROI condition, evaluate on each",
            "fill": fill,
            "roi": roi,
            "n_train": len(train),
            "n_test": len(test),
            "seed": int(seed),
            "n_boot": int(n_boot),
            "ci": float(ci),
            "metadata_columns": ",".join(metadata_columns),
            **provenance(attrs_src),
        },
    )
