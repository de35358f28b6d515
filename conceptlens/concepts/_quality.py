"""A bank quality report: is each concept detectable, distinct, useful and not a leak?"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from conceptlens.concepts._bank import ConceptBank
from conceptlens.concepts._baseline import random_words_bank
from conceptlens.concepts._filter import _baseline_lift, _score_matrix, score_lift
from conceptlens.exceptions import ConfigError, DataError

__all__ = ["bank_quality", "suggest"]


def _annotations(
    scores: xr.DataArray, names: list[str], annotations: Any
) -> tuple[dict[str, np.ndarray], str]:
    """Concept -> 0/1 vector over the scored samples, and where it came from."""
    n = scores.sizes["sample"]
    out: dict[str, np.ndarray] = {}
    if annotations is None:
        source = "dataset columns named like the concepts"
        table = {
            c: scores.coords[c].values for c in names if c in scores.coords and c != "concept"
        }
    elif isinstance(annotations, Mapping):
        source = "annotations mapping"
        table = {}
        for concept, col in annotations.items():
            if concept not in names:
                raise ConfigError(f"annotations name {concept!r}, which is not in the bank")
            if isinstance(col, str):
                if col not in scores.coords:
                    have = sorted(str(k) for k in scores.coords if k != "concept")
                    raise DataError(
                        f"annotation column {col!r} (for {concept!r}) is not a column of the "
                        f"dataset; columns: {have}"
                    )
                table[concept] = scores.coords[col].values
            else:
                table[concept] = np.asarray(col)
    else:  # a DataFrame, rows in dataset order
        source = "annotations table"
        cols = [str(c) for c in getattr(annotations, "columns", [])]
        if not cols:
            raise ConfigError(
                "annotations must be None, a mapping concept -> column name or 0/1 vector, "
                "or a DataFrame with one 0/1 column per concept"
            )
        table = {c: np.asarray(annotations[c]) for c in cols if c in names}
    for concept, v in table.items():
        v = np.asarray(v)
        if v.shape != (n,):
            raise DataError(
                f"annotation of {concept!r} has {v.shape[0] if v.ndim else 0} values for {n} "
                "scored samples; give one value per image, in dataset order"
            )
        try:
            vals = v.astype(np.float64)
        except (TypeError, ValueError):
            continue  # a text column that only shares the name: not an annotation
        if not np.isin(vals[np.isfinite(vals)], (0.0, 1.0)).all():
            if annotations is None:
                continue
            raise DataError(f"annotation of {concept!r} must be 0/1 (NaN = unknown)")
        out[concept] = vals
    return out, source


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    keep = np.isfinite(y)
    y, s = y[keep], s[keep]
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, s))


def _nearest(sim: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    sim = np.array(sim, dtype=np.float64)
    np.fill_diagonal(sim, -np.inf)
    if len(names) < 2:
        return np.full(len(names), np.nan), [""] * len(names)
    j = np.argmax(sim, axis=1)
    return sim[np.arange(len(names)), j], [names[k] for k in j]


def _drop_one(
    x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Validation log-loss and accuracy lost when each concept is left out of the head."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError("drop-one needs at least two classes among the labels")
    tr, va = train_test_split(
        np.arange(len(y)), test_size=val_fraction, random_state=seed, stratify=y_idx
    )

    def fit_eval(cols: np.ndarray) -> tuple[float, float]:
        scaler = StandardScaler().fit(x[tr][:, cols])
        clf = LogisticRegression(max_iter=5000, C=1.0)
        clf.fit(scaler.transform(x[tr][:, cols]), y_idx[tr])
        p = clf.predict_proba(scaler.transform(x[va][:, cols]))
        return (
            float(log_loss(y_idx[va], p, labels=np.arange(len(classes)))),
            float(accuracy_score(y_idx[va], p.argmax(1))),
        )

    allc = np.arange(x.shape[1])
    full_loss, full_acc = fit_eval(allc)
    d_loss, d_acc = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        loss, acc = fit_eval(np.delete(allc, j)) if x.shape[1] > 1 else (np.nan, np.nan)
        d_loss[j], d_acc[j] = loss - full_loss, full_acc - acc
    info = {
        "val_log_loss": full_loss,
        "val_accuracy": full_acc,
        "n_train": len(tr),
        "n_val": len(va),
    }
    return d_loss, d_acc, info


def suggest(
    report: xr.Dataset,
    *,
    min_auroc: float = 0.6,
    merge_cosine: float = 0.9,
    redundant_corr: float = 0.95,
    leak_cosine: float = 0.8,
) -> list[str]:
    """The suggestion per concept of a :func:`bank_quality` report, first rule that applies.

    1. ``reject: class-name leak``: a prompt contains a class name, or the text cosine with
       a class name is above ``leak_cosine``;
    2. ``reject: undetectable``: the lift is not above the random-words baseline
       (margin <= 0) or, with annotations, detection AUROC below ``min_auroc``;
    3. ``merge with X``: text cosine with concept X above ``merge_cosine`` (the same
       finding phrased twice);
    4. ``reject: redundant``: score correlation with X above ``redundant_corr`` and the head
       loses nothing without it (drop-one log-loss <= 0);
    5. ``keep``.
    """
    out = []
    for i in range(report.sizes["concept"]):
        r = report.isel(concept=i)
        auroc = float(r["auroc"])
        if bool(r["class_name_in_prompt"]) or float(r["class_cosine"]) > leak_cosine:
            out.append("reject: class-name leak")
        elif float(r["margin"]) <= 0 or (np.isfinite(auroc) and auroc < min_auroc):
            out.append("reject: undetectable")
        elif float(r["text_redundancy"]) > merge_cosine:
            out.append(f"merge with {r['text_nearest'].item()}")
        elif float(r["score_redundancy"]) > redundant_corr and not (float(r["drop_one_loss"]) > 0):
            out.append("reject: redundant")
        else:
            out.append("keep")
    return out


def bank_quality(
    bank: Any,
    backbone: Any,
    dataset: Any,
    annotations: Any = None,
    *,
    mode: str = "cosine",
    temperature: float = 0.01,
    cache: Any = None,
    n_random: int = 64,
    seed: int = 0,
    top_k: int = 5,
    quantile: float = 0.9,
    val_fraction: float = 0.3,
    min_auroc: float = 0.6,
    merge_cosine: float = 0.9,
    redundant_corr: float = 0.95,
    leak_cosine: float = 0.8,
    show_progress: bool = False,
) -> xr.Dataset:
    """Per-concept quality of a bank on a backbone and a dataset.

    Scores the bank and a random-words bank (:func:`random_words_bank`, ``n_random``
    concepts) on ``dataset`` with :func:`score_concepts` (use ``cache=`` so the images are
    embedded once), then measures for each concept:

    - ``auroc``: detection AUROC of its score against the concept's annotation (NaN when
      the concept has none): SynthDerm's ground-truth columns, or SkinCon/Derm7pt-style
      0/1 columns of a real dataset;
    - ``lift`` and ``margin``: :func:`score_lift` and its excess over the ``quantile`` of
      the random words' lifts (the calibrated scorability of :func:`filter_unscorable`);
    - ``text_redundancy`` / ``text_nearest``: highest cosine to another concept's text
      embedding (the backbone's text tower, the bank's templates);
    - ``score_redundancy`` / ``score_nearest``: highest Pearson correlation of its scores
      with another concept's over the images (the cosine of the centred score columns);
    - ``class_cosine`` / ``class_nearest`` and ``class_name_in_prompt``: how close it is to a
      class name (a concept that names the class leaks the label);
    - ``drop_one_loss`` / ``drop_one_accuracy``: how much a logistic-regression head on the
      standardised scores loses on a stratified validation split (``val_fraction``) when
      the concept is left out (positive = the concept helps);
    - ``suggestion``: see :func:`suggest`.

    Parameters
    ----------
    bank : ConceptBank or str
    backbone : Backbone or str
    dataset : ImageDataset
        With a ``label`` column for drop-one (otherwise those are NaN).
    annotations : None, mapping or DataFrame
        None: dataset columns named like the concepts (SynthDerm's ground truth).
        A mapping concept -> column name (or 0/1 vector), or a DataFrame with one 0/1
        column per concept, rows in dataset order. NaN = unknown.

    Returns
    -------
    xarray.Dataset
        Dim ``concept``; attrs ``backbone``, ``bank_id``, ``baseline_threshold``,
        ``val_log_loss``, ``val_accuracy``...

    Examples
    --------
    >>> import conceptlens as cl
    >>> ds = cl.SynthDerm().generate(300, seed=0).to_dataset()  # doctest: +SKIP
    >>> q = bank_quality("synthderm", "synthderm-lit", ds, cache="emb")  # doctest: +SKIP
    >>> q["auroc"].sel(concept="ruler").item() > 0.9  # doctest: +SKIP
    True
    """
    from conceptlens.backbones import load_backbone
    from conceptlens.concepts._bank import load_bank
    from conceptlens.concepts._scoring import concept_text_embeddings, score_concepts

    bank = load_bank(bank) if not isinstance(bank, ConceptBank) else bank
    if isinstance(backbone, str):
        backbone = load_backbone(backbone)
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    kw = {"mode": mode, "temperature": temperature, "cache": cache, "show_progress": show_progress}
    scores = score_concepts(backbone, dataset, bank, **kw)
    baseline = score_concepts(
        backbone, dataset, random_words_bank(bank, n_random, seed=seed), **kw
    )
    names = list(bank.names)
    x = _score_matrix(scores, names)
    lift = score_lift(x, top_k)
    threshold, _ = _baseline_lift(scores, baseline, top_k, quantile)

    ann, source = _annotations(scores, names, annotations)
    auroc = np.array(
        [_auroc(ann[c], x[:, i]) if c in ann else np.nan for i, c in enumerate(names)]
    )

    text, _, tpls = concept_text_embeddings(backbone, bank)
    text = text.astype(np.float64)
    text_red, text_near = _nearest(text @ text.T, names)
    xc = x - x.mean(axis=0)
    norms = np.linalg.norm(xc, axis=0)
    corr = (xc.T @ xc) / np.outer(np.where(norms == 0, 1, norms), np.where(norms == 0, 1, norms))
    score_red, score_near = _nearest(corr, names)

    cls_text = [c.replace("_", " ") for c in bank.classes]
    cls_emb = np.stack(
        [
            np.asarray(backbone.encode_text([t.format(c) for t in tpls]), dtype=np.float64).mean(0)
            for c in cls_text
        ]
    )
    cls_emb /= np.linalg.norm(cls_emb, axis=1, keepdims=True)
    ccos = text @ cls_emb.T
    in_prompt = np.array(
        [
            any(
                re.search(rf"(?<![a-z]){re.escape(cl.lower())}(?![a-z])", p.lower())
                for p in c.prompts
                for cl in cls_text
            )
            for c in bank.concepts
        ]
    )

    n = len(names)
    d_loss, d_acc = np.full(n, np.nan), np.full(n, np.nan)
    info: dict[str, float] = {}
    if "label" in scores.coords:
        y = np.asarray(scores["label"].values)
        d_loss, d_acc, info = _drop_one(x, y, val_fraction, seed)

    report = xr.Dataset(
        {
            "auroc": ("concept", auroc),
            "lift": ("concept", lift),
            "margin": ("concept", lift - threshold),
            "text_redundancy": ("concept", text_red),
            "text_nearest": ("concept", np.array(text_near, dtype=str)),
            "score_redundancy": ("concept", score_red),
            "score_nearest": ("concept", np.array(score_near, dtype=str)),
            "class_cosine": ("concept", ccos.max(axis=1)),
            "class_nearest": (
                "concept",
                np.array([bank.classes[j] for j in ccos.argmax(1)], dtype=str),
            ),
            "class_name_in_prompt": ("concept", in_prompt),
            "drop_one_loss": ("concept", d_loss),
            "drop_one_accuracy": ("concept", d_acc),
        },
        coords={
            "concept": np.array(names, dtype=str),
            "concept_group": ("concept", np.array(bank.groups, dtype=str)),
        },
        attrs={
            "backbone": str(scores.attrs.get("backbone", "")),
            "bank_id": bank.id,
            "bank_version": bank.version,
            "score_mode": mode,
            "n_samples": int(x.shape[0]),
            "top_k": int(top_k),
            "quantile": float(quantile),
            "n_random": int(n_random),
            "baseline_threshold": float(threshold),
            "annotations": source,
            "n_annotated": len(ann),
            **{k: float(v) for k, v in info.items()},
        },
    )
    report["suggestion"] = (
        "concept",
        np.array(
            suggest(
                report,
                min_auroc=min_auroc,
                merge_cosine=merge_cosine,
                redundant_corr=redundant_corr,
                leak_cosine=leak_cosine,
            ),
            dtype=str,
        ),
    )
    return report
