"""Concept filters (each reports what it removed and why) and per-class selection.

Filters follow Label-free CBM and LaBo: drop concepts that are too long, too close to a
class name, near-duplicates of a kept concept, or that the backbone cannot score (mean of
the top-k activations on training images below a cutoff). Selection picks K concepts per
class by greedy maximisation of a facility-location coverage term plus a
discriminability term (monotone submodular, so greedy is within 1 - 1/e of the optimum).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from conceptlens._typing import EmbedFn
from conceptlens.concepts._bank import ConceptBank
from conceptlens.exceptions import BankError, ConfigError, DataError, FilterWarning

__all__ = [
    "FilterReport",
    "facility_location_greedy",
    "facility_location_value",
    "filter_bank",
    "filter_class_names",
    "filter_duplicates",
    "filter_length",
    "filter_unscorable",
    "lexical_embed",
    "score_lift",
    "select_concepts",
]


@dataclasses.dataclass
class FilterReport:
    """What each filter removed and why: one record per removed concept."""

    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def add(self, concept: str, filter: str, reason: str, value: float | None = None) -> None:
        self.records.append(
            {"concept": concept, "filter": filter, "reason": reason, "value": value}
        )

    def extend(self, other: FilterReport) -> None:
        self.records.extend(other.records)

    @property
    def removed(self) -> list[str]:
        """Names of the removed concepts, in removal order."""
        return [r["concept"] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def to_frame(self):  # type: ignore[no-untyped-def]
        """A pandas DataFrame with columns concept, filter, reason, value."""
        import pandas as pd

        return pd.DataFrame(self.records, columns=["concept", "filter", "reason", "value"])

    def summary(self) -> str:
        if not self.records:
            return "no concept removed"
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r["filter"]] = counts.get(r["filter"], 0) + 1
        return ", ".join(f"{k}: {v} removed" for k, v in counts.items())


def lexical_embed(texts: Sequence[str], dim: int = 1024) -> np.ndarray:
    """Deterministic hashed character-trigram + word embedding, L2-normalised.

    A cheap, model-free text embedding for near-duplicate detection ("irregular streak"
    vs "irregular streaks"); it knows spelling, not meaning.

    Examples
    --------
    >>> e = lexical_embed(["irregular streaks", "irregular streak", "blue veil"])
    >>> bool(e[0] @ e[1] > e[0] @ e[2])
    True
    """
    out = np.zeros((len(texts), dim), dtype=np.float64)
    for i, t in enumerate(texts):
        t = " " + re.sub(r"[^a-z0-9]+", " ", t.lower()).strip() + " "
        feats = [t[j : j + 3] for j in range(len(t) - 2)] + [f"w:{w}" for w in t.split()]
        for f in feats:
            h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
            out[i, h % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


def _unit(x: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != n:
        raise ConfigError(f"embed() must return an array of shape ({n}, dim), got {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def _concept_embeddings(bank: ConceptBank, embed: EmbedFn) -> np.ndarray:
    """Mean of each concept's prompt embeddings, renormalised: (n_concepts, dim)."""
    texts = [p for c in bank.concepts for p in c.prompts]
    e = _unit(embed(texts), len(texts))
    out, start = [], 0
    for c in bank.concepts:
        out.append(e[start : start + len(c.prompts)].mean(axis=0))
        start += len(c.prompts)
    return _unit(np.stack(out), len(bank))


def _keep(
    bank: ConceptBank, names: Sequence[str], what: str, hint: str = "", warn: bool = True
) -> ConceptBank:
    if not names:
        raise BankError(
            f"filter {what} removed every concept of bank {bank.id!r}; loosen it{hint}"
        )
    if warn and 2 * len(names) < len(bank):
        warnings.warn(
            f"filter {what} removed {len(bank) - len(names)} of {len(bank)} concepts of bank "
            f"{bank.id!r}; check that its threshold suits this backbone{hint}",
            FilterWarning,
            stacklevel=3,
        )
    return bank.subset(names=names)


# ---------------------------------------------------------------- filters
def filter_length(
    bank: ConceptBank, *, max_words: int = 8, max_chars: int = 80
) -> tuple[ConceptBank, FilterReport]:
    """Remove concepts whose first prompt has more than ``max_words`` words or ``max_chars``.

    Examples
    --------
    >>> from conceptlens.concepts import load_bank
    >>> kept, report = filter_length(load_bank("dermoscopy"), max_words=3)
    >>> set(report.to_frame()["filter"]) <= {"length"}
    True
    """
    report = FilterReport()
    keep = []
    for c in bank.concepts:
        p = c.prompts[0]
        n = len(p.split())
        if n > max_words:
            report.add(c.name, "length", f"{n} words > {max_words}", float(n))
        elif len(p) > max_chars:
            report.add(c.name, "length", f"{len(p)} characters > {max_chars}", float(len(p)))
        else:
            keep.append(c.name)
    return _keep(bank, keep, "length"), report


def filter_class_names(
    bank: ConceptBank,
    *,
    max_ratio: float = 0.8,
    embed: EmbedFn | None = None,
    max_cosine: float | None = None,
) -> tuple[ConceptBank, FilterReport]:
    """Remove concepts that name a class or read almost like one.

    A concept is removed if a prompt contains a class name as a word sequence, or its
    ``difflib`` similarity ratio with a class name exceeds ``max_ratio``, or (with
    ``embed`` and ``max_cosine``) the cosine between its embedding and a class name's
    exceeds ``max_cosine``.

    Examples
    --------
    >>> from conceptlens.concepts import load_bank
    >>> kept, report = filter_class_names(load_bank("chest_xray"))
    >>> sorted(report.removed)[:2]
    ['atelectasis', 'cardiomegaly']
    """
    report = FilterReport()
    cls_text = [c.replace("_", " ").lower() for c in bank.classes]
    cls_emb = c_emb = None
    if embed is not None and max_cosine is not None:
        cls_emb = _unit(embed(cls_text), len(cls_text))
        c_emb = _concept_embeddings(bank, embed)
    keep = []
    for i, c in enumerate(bank.concepts):
        reason, value = None, None
        for p in c.prompts:
            words = " " + re.sub(r"[^a-z0-9]+", " ", p.lower()) + " "
            for cl in cls_text:
                if f" {cl} " in words:
                    reason, value = f"prompt {p!r} contains class name {cl!r}", 1.0
                    break
                r = difflib.SequenceMatcher(None, p.lower(), cl).ratio()
                if r > max_ratio:
                    reason, value = f"prompt {p!r} similar to class {cl!r} (ratio {r:.2f})", r
                    break
            if reason:
                break
        if reason is None and cls_emb is not None and c_emb is not None:
            cos = cls_emb @ c_emb[i]
            j = int(np.argmax(cos))
            if cos[j] > max_cosine:  # type: ignore[operator]
                reason = f"embedding cosine {cos[j]:.3f} with class {cls_text[j]!r}"
                value = float(cos[j])
        if reason is None:
            keep.append(c.name)
        else:
            report.add(c.name, "class_name", reason, value)
    return _keep(bank, keep, "class_name"), report


def filter_duplicates(
    bank: ConceptBank,
    *,
    embed: EmbedFn | None = None,
    max_cosine: float = 0.9,
    priority: Sequence[float] | None = None,
) -> tuple[ConceptBank, FilterReport]:
    """Remove near-duplicates: cosine of concept embeddings above ``max_cosine``.

    Concepts are visited by decreasing ``priority`` (default: bank order, first wins);
    each one is dropped if it is too close to a concept already kept.

    Parameters
    ----------
    embed : callable, optional
        ``texts -> (n, d)``; defaults to :func:`lexical_embed`. Pass the backbone's
        ``encode_text`` for meaning-level duplicates.

    Examples
    --------
    >>> from conceptlens.concepts import load_bank
    >>> kept, report = filter_duplicates(load_bank("dermoscopy"), max_cosine=0.7)
    >>> report.removed
    ['broadened_network']
    """
    embed = embed or lexical_embed
    e = _concept_embeddings(bank, embed)
    n = len(bank)
    order = list(range(n))
    if priority is not None:
        if len(priority) != n:
            raise ConfigError(f"priority has {len(priority)} values for {n} concepts")
        order = list(np.argsort(-np.asarray(priority, dtype=float), kind="stable"))
    kept: list[int] = []
    report = FilterReport()
    for i in order:
        if kept:
            cos = e[kept] @ e[i]
            j = int(np.argmax(cos))
            if cos[j] > max_cosine:
                other = bank.concepts[kept[j]].name
                report.add(
                    bank.concepts[i].name,
                    "duplicate",
                    f"cosine {cos[j]:.3f} > {max_cosine} with kept concept {other!r}",
                    float(cos[j]),
                )
                continue
        kept.append(int(i))
    names = [bank.concepts[i].name for i in sorted(kept)]
    return _keep(bank, names, "duplicate"), report


def _score_matrix(concept_score: Any, names: Sequence[str]) -> np.ndarray:
    """``concept_score`` restricted to ``names`` as a float (sample, concept) array.

    Raises ``DataError`` if it is not a (sample, concept) DataArray or lacks a name.
    """
    dims = getattr(concept_score, "dims", ())
    if "concept" not in dims or "sample" not in dims:
        raise DataError(
            "concept_score must be an xarray.DataArray with dims ('sample', 'concept')"
        )
    have = {str(c) for c in concept_score["concept"].values}
    missing = [n for n in names if n not in have]
    if missing:
        raise DataError(
            f"concept_score has no scores for {missing}; score the same bank "
            "(conceptlens.concepts.score_concepts) before filtering"
        )
    return np.asarray(
        concept_score.sel(concept=list(names)).transpose("sample", "concept"), dtype=np.float64
    )


def _top_k_mean(concept_score: Any, names: Sequence[str], top_k: int) -> np.ndarray:
    arr = _score_matrix(concept_score, names)
    k = max(1, min(int(top_k), arr.shape[0]))
    top = -np.sort(-arr, axis=0)[:k]
    return top.mean(axis=0)


def score_lift(scores: np.ndarray, top_k: int = 5) -> np.ndarray:
    """Mean of each column's ``top_k`` highest values minus the column's median.

    How far a concept's strongest activations rise above its typical score on the same
    images. Every prompt has its own offset in a CLIP-style space (a random word pair
    reaches a cosine of 0.2 on synthderm-lit), so the lift, not the raw top score, says
    whether the backbone picks the concept out in some images.

    Parameters
    ----------
    scores : ndarray, shape (n_samples, n_concepts)
    top_k : int

    Examples
    --------
    >>> score_lift(np.array([[0.1, 0.5], [0.2, 0.5], [0.9, 0.5]]), top_k=1)
    array([0.7, 0. ])
    """
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise DataError(
            f"scores must be a non-empty (n_samples, n_concepts) array, got {arr.shape}"
        )
    k = max(1, min(int(top_k), arr.shape[0]))
    top = -np.sort(-arr, axis=0)[:k]
    return top.mean(axis=0) - np.median(arr, axis=0)


def _baseline_lift(
    concept_score: Any, baseline: Any, top_k: int, quantile: float
) -> tuple[float, int]:
    """The ``quantile`` of the random-word concepts' lift, checked to match the scores."""
    if not 0 < quantile <= 1:
        raise ConfigError(f"quantile must be in (0, 1], got {quantile}")
    names = [str(c) for c in baseline["concept"].values]
    base = _score_matrix(baseline, names)
    ids = (
        [str(v) for v in concept_score["sample"].values]
        if "sample" in concept_score.coords
        else None
    )
    bids = [str(v) for v in baseline["sample"].values] if "sample" in baseline.coords else None
    if base.shape[0] != concept_score.sizes["sample"] or (ids and bids and ids != bids):
        raise DataError(
            "baseline scores must be on the same images, in the same order, as concept_score "
            f"({base.shape[0]} vs {concept_score.sizes['sample']} samples); score the "
            "random-words bank (random_words_bank) on the same dataset"
        )
    for key in ("backbone", "score_mode", "template_hash"):
        a, b = concept_score.attrs.get(key), baseline.attrs.get(key)
        if key != "template_hash" and a is not None and b is not None and a != b:
            raise DataError(
                f"baseline scores have {key}={b!r} but concept_score has {key}={a!r}; score "
                "the random-words bank with the same backbone and mode"
            )
    if len(names) < 10:
        raise DataError(
            f"the baseline has {len(names)} random concepts; use at least 10 (default 64)"
        )
    return float(np.quantile(score_lift(base, top_k), quantile)), len(names)


def filter_unscorable(
    bank: ConceptBank,
    concept_score: Any,
    *,
    baseline: Any = None,
    quantile: float = 0.9,
    margin: float = 0.0,
    cutoff: float | None = None,
    top_k: int = 5,
) -> tuple[ConceptBank, FilterReport]:
    """Remove concepts the backbone cannot pick out, calibrated to the backbone.

    **Calibrated (default)**: each concept's lift (:func:`score_lift`: mean of its
    ``top_k`` highest scores minus its median, on the training images) must exceed the
    ``quantile`` of the lifts of a random-words bank (:func:`random_words_bank`) scored by
    the same backbone, mode and templates on the same images, plus ``margin``. The
    threshold is in the backbone's own units, so it travels between backbones.

    **Absolute** (``cutoff=``, Label-free CBM's interpretability cutoff): the mean of the
    ``top_k`` highest scores must reach ``cutoff`` (0.25 was set for CLIP ViT-B/16 cosine
    on ImageNet-scale data; on other backbones it can remove almost everything).

    A :class:`~conceptlens.exceptions.FilterWarning` is issued when more than half of
    the bank is removed.

    Parameters
    ----------
    concept_score : xarray.DataArray
        Dims ``("sample", "concept")`` on training images, concepts named as in the bank.
    baseline : xarray.DataArray
        Scores of the random-words bank on the same images (at least 10 concepts).
    quantile : float
        Quantile of the random-word lifts a concept must beat (default 0.9).
    margin : float
        Added to that quantile, in score units.
    cutoff : float, optional
        Absolute cutoff instead of ``baseline``.

    Examples
    --------
    >>> import xarray as xr
    >>> from conceptlens.concepts import load_bank
    >>> bank = load_bank("dermoscopy").subset(names=["ruler", "hair"])
    >>> s = xr.DataArray([[0.3, 0.1], [0.2, 0.1]], dims=("sample", "concept"),
    ...                  coords={"concept": ["hair", "ruler"]})
    >>> filter_unscorable(bank, s, cutoff=0.2, top_k=1)[1].removed
    ['ruler']
    """
    report = FilterReport()
    keep = []
    if (baseline is None) == (cutoff is None):
        raise ConfigError(
            "give baseline= (scores of a random-words bank on the same images; the "
            "calibrated default) or cutoff= (an absolute cutoff), not both or neither"
        )
    if baseline is not None:
        threshold, n_random = _baseline_lift(concept_score, baseline, top_k, quantile)
        threshold += margin
        lift = score_lift(_score_matrix(concept_score, bank.names), top_k)
        for c, v in zip(bank.concepts, lift, strict=True):
            if v <= threshold:
                report.add(
                    c.name,
                    "unscorable",
                    f"top-{top_k} lift {v:.4f} <= {threshold:.4f} (random words: "
                    f"q{quantile:g} of {n_random} + margin {margin:g})",
                    float(v),
                )
            else:
                keep.append(c.name)
        hint = "; lower quantile= or margin="
    else:
        top = _top_k_mean(concept_score, bank.names, top_k)
        for c, v in zip(bank.concepts, top, strict=True):
            if v < cutoff:  # type: ignore[operator]
                report.add(
                    c.name, "unscorable", f"mean of top-{top_k} scores {v:.4f} < {cutoff}", v
                )
            else:
                keep.append(c.name)
        hint = "; or calibrate with baseline= (random-words scores) instead of cutoff="
    return _keep(bank, keep, "unscorable", hint), report


def filter_bank(
    bank: ConceptBank,
    *,
    max_words: int | None = None,
    max_chars: int = 80,
    class_ratio: float | None = None,
    class_cosine: float | None = None,
    duplicate_cosine: float | None = None,
    embed: EmbedFn | None = None,
    concept_score: Any = None,
    baseline: Any = None,
    quantile: float = 0.9,
    margin: float = 0.0,
    cutoff: float | None = None,
    top_k: int = 5,
) -> tuple[ConceptBank, FilterReport]:
    """Apply the requested filters in order: length, class name, scorability, duplicates.

    Each filter runs only when its parameter is given; scorability runs with
    ``baseline=`` (calibrated, see :func:`filter_unscorable`) or ``cutoff=`` (absolute).
    Duplicates run last so that a concept is compared only with concepts that survived
    the other filters. A :class:`~conceptlens.exceptions.FilterWarning` is issued when a
    filter, or all of them together, remove more than half of the bank.

    Examples
    --------
    >>> from conceptlens.concepts import load_bank
    >>> kept, report = filter_bank(load_bank("dermoscopy"), max_words=6, duplicate_cosine=0.95)
    >>> len(kept) + len(report) == len(load_bank("dermoscopy"))
    True
    """
    report = FilterReport()
    start = len(bank)
    if max_words is not None:
        bank, r = filter_length(bank, max_words=max_words, max_chars=max_chars)
        report.extend(r)
    if class_ratio is not None or class_cosine is not None:
        bank, r = filter_class_names(
            bank,
            max_ratio=class_ratio if class_ratio is not None else 1.01,
            embed=embed,
            max_cosine=class_cosine,
        )
        report.extend(r)
    if cutoff is not None or baseline is not None:
        if concept_score is None:
            raise ConfigError(
                "cutoff= / baseline= need concept_score= (scores on training images)"
            )
        bank, r = filter_unscorable(
            bank,
            concept_score,
            baseline=baseline,
            quantile=quantile,
            margin=margin,
            cutoff=cutoff,
            top_k=top_k,
        )
        report.extend(r)
    if duplicate_cosine is not None:
        bank, r = filter_duplicates(bank, embed=embed, max_cosine=duplicate_cosine)
        report.extend(r)
    counts: dict[str, int] = {}
    for rec in report.records:
        counts[rec["filter"]] = counts.get(rec["filter"], 0) + 1
    if 2 * len(bank) < start and all(2 * v <= start for v in counts.values()):
        warnings.warn(
            f"the filters together removed {start - len(bank)} of {start} concepts "
            f"({report.summary()}); check their thresholds",
            FilterWarning,
            stacklevel=2,
        )
    return bank, report


# ---------------------------------------------------------------- selection
def facility_location_value(
    similarity: np.ndarray,
    selected: Sequence[int],
    gains: np.ndarray | None = None,
    weight: float = 1.0,
) -> float:
    """F(S) = sum_i max_{j in S} max(sim[i, j], 0) + weight * sum_{j in S} gains[j].

    Examples
    --------
    >>> facility_location_value(np.eye(3), [0, 2])
    2.0
    """
    sim = np.clip(np.asarray(similarity, dtype=np.float64), 0, None)
    s = list(selected)
    cover = float(sim[:, s].max(axis=1).sum()) if s else 0.0
    extra = float(np.sum(np.asarray(gains)[s])) * weight if gains is not None and s else 0.0
    return cover + extra


def facility_location_greedy(
    similarity: np.ndarray, k: int, gains: np.ndarray | None = None, weight: float = 1.0
) -> list[int]:
    """Greedy maximisation of :func:`facility_location_value` under ``|S| <= k``.

    Negative similarities are clipped to 0 and ``gains`` must be >= 0, so F is monotone
    submodular and the greedy set is within a factor (1 - 1/e) of the optimum
    (Nemhauser, Wolsey & Fisher, 1978). Ties go to the lower index.

    Parameters
    ----------
    similarity : ndarray, shape (n, n)
        ``similarity[i, j]``: how well candidate j represents item i.
    k : int
        Number to select (at most n).
    gains : ndarray, shape (n,), optional
        Non-negative per-candidate bonus (discriminability).

    Examples
    --------
    >>> sim = np.array([[1, .9, 0], [.9, 1, 0], [0, 0, 1]])
    >>> facility_location_greedy(sim, 2)
    [0, 2]
    """
    sim = np.clip(np.asarray(similarity, dtype=np.float64), 0, None)
    n = sim.shape[0]
    if sim.ndim != 2 or sim.shape[1] != n:
        raise ConfigError(f"similarity must be square (n, n), got {sim.shape}")
    g = np.zeros(n) if gains is None else np.asarray(gains, dtype=np.float64)
    if g.shape != (n,) or np.any(g < 0) or not np.all(np.isfinite(g)):
        raise ConfigError("gains must be a finite, non-negative vector with one value per item")
    k = min(int(k), n)
    best = np.zeros(n)
    chosen: list[int] = []
    avail = np.ones(n, dtype=bool)
    for _ in range(k):
        marginal = np.maximum(sim - best[:, None], 0).sum(axis=0) + weight * g
        marginal[~avail] = -np.inf
        j = int(np.argmax(marginal))
        chosen.append(j)
        avail[j] = False
        best = np.maximum(best, sim[:, j])
    return chosen


def _labels_for(concept_score: Any, labels: Any, classes: Sequence[str]) -> np.ndarray:
    if labels is None:
        if "label" not in concept_score.coords:
            raise DataError(
                "discriminability needs labels: pass labels= or keep a 'label' sample "
                "coordinate on concept_score"
            )
        labels = concept_score["label"].values
    lab = np.asarray(labels)
    if lab.dtype.kind in "iu":
        return lab.astype(int)
    idx = {c: i for i, c in enumerate(classes)}
    try:
        return np.array([idx[str(v)] for v in lab])
    except KeyError as exc:
        raise DataError(f"label {exc} is not one of the bank's classes {list(classes)}") from None


def select_concepts(
    bank: ConceptBank,
    k: int,
    *,
    embed: EmbedFn | None = None,
    concept_score: Any = None,
    labels: Any = None,
    weight: float = 1.0,
) -> tuple[ConceptBank, Any]:
    """Select up to ``k`` concepts per class: facility location + discriminability.

    For each class, the candidates are the concepts associated with it (+1); a bank
    without any class association uses every concept for every class. Coverage uses the
    cosine between concept embeddings (``embed``, default :func:`lexical_embed`). With
    ``concept_score`` (training scores) and labels, each candidate also earns
    ``weight * d``, where d is the standardised mean difference of its score between the
    class and the rest, clipped at 0 and scaled so the best candidate has d = 1
    (multiplied by the number of candidates, to be on the coverage scale).

    Returns
    -------
    (ConceptBank, pandas.DataFrame)
        The union of the selections in bank order, and one row per (class, pick) with the
        rank, coverage gain and discriminability.

    Examples
    --------
    >>> from conceptlens.concepts import load_bank
    >>> kept, table = select_concepts(load_bank("dermoscopy"), 3)
    >>> len(kept) <= 3 * 4, list(table.columns)[:3]
    (True, ['class', 'rank', 'concept'])
    """
    import pandas as pd

    if k < 1:
        raise ConfigError("k must be >= 1")
    embed = embed or lexical_embed
    emb = _concept_embeddings(bank, embed)
    has_assoc = any(c.positive_classes for c in bank.concepts)
    score_arr = lab = None
    if concept_score is not None:
        score_arr = _score_matrix(concept_score, bank.names)
        lab = _labels_for(concept_score, labels, bank.classes)
        if score_arr.shape[0] != lab.shape[0]:
            raise DataError(f"{lab.shape[0]} labels for {score_arr.shape[0]} scored samples")
    rows = []
    chosen: set[int] = set()
    for ci, cls in enumerate(bank.classes):
        cand = [
            i for i, c in enumerate(bank.concepts) if not has_assoc or cls in c.positive_classes
        ]
        if not cand:
            continue
        sim = emb[cand] @ emb[cand].T
        gains = np.zeros(len(cand))
        if score_arr is not None and lab is not None:
            x = score_arr[:, cand]
            inside, outside = x[lab == ci], x[lab != ci]
            if len(inside) and len(outside):
                pooled = np.sqrt((inside.var(axis=0) + outside.var(axis=0)) / 2) + 1e-12
                d = np.clip((inside.mean(axis=0) - outside.mean(axis=0)) / pooled, 0, None)
                if d.max() > 0:
                    gains = d / d.max() * len(cand)
        picks = facility_location_greedy(sim, k, gains=gains, weight=weight)
        cur = np.zeros(len(cand))
        for rank, p in enumerate(picks):
            new = np.maximum(cur, np.clip(sim[:, p], 0, None))
            rows.append(
                {
                    "class": cls,
                    "rank": rank,
                    "concept": bank.concepts[cand[p]].name,
                    "coverage_gain": float(new.sum() - cur.sum()),
                    "discriminability": float(gains[p]),
                }
            )
            cur = new
            chosen.add(cand[p])
    names = [bank.concepts[i].name for i in sorted(chosen)]
    return _keep(bank, names, "selection", warn=False), pd.DataFrame(rows)
