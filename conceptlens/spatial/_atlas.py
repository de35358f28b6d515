"""Prototype atlas: per concept, M prototype vectors from training patch embeddings.

For each concept, the training patches most similar to the concept's text direction are
clustered (k-means on unit vectors, centroids renormalised), as CSR (CVPR 2025) builds
its atlas.  Prototypes that never win (are never the most similar prototype of their
concept on a training image) are re-seeded from the worst-served training images, and
each prototype is linked to its nearest training patch so it can be shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError, UnknownNameError, unknown_names

__all__ = ["PrototypeAtlas", "build_atlas", "unit_patches"]


def unit_patches(patches: Any) -> np.ndarray:
    """``patches`` (N, gh, gw, D) as float32 unit vectors (validated)."""
    p = np.asarray(patches, dtype=np.float32)
    if p.ndim == 3:
        p = p[None]
    if p.ndim != 4:
        raise DataError(
            f"patch embeddings must have shape (N, gh, gw, D) as returned by "
            f"Backbone.patch_embeddings, got {p.shape}"
        )
    if len(p) == 0:
        raise DataError(
            f"the patch embeddings hold 0 images (shape {p.shape}); the selection matched "
            "nothing: check the indices or mask it was made with."
        )
    if not np.isfinite(p).all():
        bad = np.flatnonzero(~np.isfinite(p).reshape(len(p), -1).all(axis=1))
        raise DataError(
            f"the patch embeddings contain NaN or infinite values (image(s) at position "
            f"{bad[:5].tolist()}); re-embed those images"
        )
    norm = np.linalg.norm(p, axis=-1, keepdims=True)
    if not (norm > 0).all():
        bad = np.flatnonzero(~(norm > 0).reshape(len(p), -1).all(axis=1))
        raise DataError(
            f"the patch embeddings hold all-zero vectors (image(s) at position "
            f"{bad[:5].tolist()}), which have no direction to compare; pass the output of "
            "Backbone.patch_embeddings"
        )
    return p / norm


def names_list(names: Any, what: str, *, allow_empty: bool = True) -> list[str]:
    """``names`` as a list of str: one bare name is one name, not its characters."""
    if isinstance(names, str):
        return [names]
    out = [str(q) for q in names]
    if not out and not allow_empty:
        raise ConfigError(f"no {what} given; pass a list of {what} names")
    return out


def select_samples(labels: Any, sample_ids: Sequence[str] | None, what: str) -> Any:
    """Reorder labelled rows to ``sample_ids``; refuse missing ids.

    A DataArray with a ``sample`` coordinate, or a DataFrame indexed by sample id (not a
    plain 0..n-1 index), is reordered; anything else is returned as it is (by position).
    """
    import pandas as pd

    if isinstance(labels, xr.DataArray) and "sample" in labels.dims and "sample" in labels.coords:
        have = [str(v) for v in labels["sample"].values]
    elif isinstance(labels, pd.DataFrame) and not isinstance(labels.index, pd.RangeIndex):
        have = [str(v) for v in labels.index]
    else:
        return labels
    if sample_ids is None:
        raise ConfigError(
            f"the {what} carry sample ids ({have[:3]}...) but the images' ids were not "
            "given: pass sample_ids= (the ids of the patches' rows, e.g. from patch_grid) "
            "so they are matched by id, or plain values (.values) to pair them by position"
        )
    missing = [i for i in sample_ids if i not in set(have)]
    if missing:
        raise DataError(
            f"{what} lack the sample(s) {missing[:5]} (of {len(missing)} missing); give "
            "one row per training image, with the same sample ids"
        )
    if isinstance(labels, pd.DataFrame):
        return labels.set_axis(have).loc[list(sample_ids)]
    return labels.assign_coords(sample=have).sel(sample=list(sample_ids))


def check_binary(values: np.ndarray, what: str) -> np.ndarray:
    """``values`` (bool, or numbers 0/1; uint8 0/255 too) as a bool array, else raise."""
    v = np.asarray(values)
    if v.dtype == bool:
        return v
    if not (np.issubdtype(v.dtype, np.number)):
        raise DataError(f"{what} must be bool or 0/1, got dtype {v.dtype}")
    if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
        raise DataError(f"{what} hold NaN or infinite values; fill them with 0/1 first")
    seen = np.unique(v)
    ok = set(seen.tolist()) <= {0, 1} or (v.dtype == np.uint8 and set(seen.tolist()) <= {0, 255})
    if not ok:
        other = [x for x in seen.tolist() if x not in (0, 1)][:3]
        raise DataError(
            f"{what} must be bool or 0/1, got values like {other}; threshold them first "
            "(e.g. x > 0.5)"
        )
    return v != 0


def concept_label_matrix(
    labels: Any,
    concepts: Sequence[str],
    n: int,
    what: str,
    sample_ids: Sequence[str] | None = None,
) -> np.ndarray:
    """``concept_labels`` as a bool (n, len(concepts)) matrix in the order of ``concepts``.

    A DataArray with a ``concept`` dim or a DataFrame with one column per concept is
    taken by concept name (a DataFrame's columns in another order were read by position);
    an array by position.  With ``sample_ids``, a DataArray with a ``sample`` coordinate
    is reordered to them (and must hold them all).  Missing concepts, a wrong shape,
    NaN and values other than 0/1 raise :class:`DataError`.
    """
    import pandas as pd

    concepts = [str(c) for c in concepts]
    labels = select_samples(labels, sample_ids, "concept_labels")
    if isinstance(labels, xr.DataArray) and "concept" in labels.dims:
        have = {str(c) for c in labels["concept"].values}
        missing = [c for c in concepts if c not in have]
        if missing:
            raise DataError(f"concept_labels lack the {what} concept(s) {missing}")
        lab = np.asarray(labels.transpose(..., "concept").sel(concept=concepts).values)
    elif isinstance(labels, pd.DataFrame):
        missing = [c for c in concepts if c not in set(map(str, labels.columns))]
        if missing:
            raise DataError(
                f"concept_labels (a DataFrame) lack column(s) for the {what} concept(s) "
                f"{missing}; give one 0/1 column per concept, named like it"
            )
        lab = labels.rename(columns=str)[concepts].to_numpy()
    else:
        lab = np.asarray(labels)
    if lab.shape != (n, len(concepts)):
        raise DataError(
            f"concept_labels must have shape ({n}, {len(concepts)}) (images x {what} "
            f"concepts {concepts}), got {lab.shape}"
        )
    if lab.dtype != bool:
        try:
            lab = np.asarray(lab, dtype=float)
        except (TypeError, ValueError):
            raise DataError(
                f"concept_labels must be 0/1 or bool, got values like {lab.ravel()[:3].tolist()}"
            ) from None
    if lab.dtype != bool and np.isnan(lab).any():
        rows, cols = np.nonzero(np.isnan(lab))
        raise DataError(
            f"concept_labels hold {len(rows)} missing value(s) (NaN), e.g. image {rows[0]}, "
            f"concept {concepts[cols[0]]!r}; fill them with 0/1 or leave those images out"
        )
    return check_binary(lab, "concept_labels")


@dataclass(frozen=True)
class PrototypeAtlas:
    """Prototype vectors grouped by concept, each linked to a training patch.

    Build it with :func:`build_atlas`.

    Attributes
    ----------
    vectors : numpy.ndarray
        float32, (n_prototypes, D), unit norm, in the joint embedding space.
    names : list of str
        ``"<concept>/<k>"``, one per prototype.
    concepts : list of str
        Concept of each prototype.
    source_sample, source_y, source_x : numpy.ndarray of int
        Training image (position in the training set) and patch nearest to each prototype.
    source_ids : list of str
        Id of that training image.
    source_cosine : numpy.ndarray
        Cosine between the prototype and that patch.
    wins : numpy.ndarray of int
        Training images on which the prototype is its concept's most similar prototype.
    grid, image_size : tuple of int, int
        Patch grid and input size of the backbone the atlas was built with.
    info : dict
        Build report: prototypes alive before and after re-seeding, M, candidates.
    train_ids : list of str
        Ids of all the training images, in order (what ``source_sample`` indexes).
    """

    vectors: np.ndarray
    names: list[str]
    concepts: list[str]
    source_sample: np.ndarray
    source_y: np.ndarray
    source_x: np.ndarray
    source_ids: list[str]
    source_cosine: np.ndarray
    wins: np.ndarray
    grid: tuple[int, int]
    image_size: int
    info: dict[str, Any] = field(default_factory=dict)
    train_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        alive = int((self.wins > 0).sum())
        return (
            f"PrototypeAtlas({len(self)} prototypes, {len(self.concept_names)} concepts, "
            f"{alive} win on >= 1 training image)"
        )

    @property
    def concept_names(self) -> list[str]:
        """Concepts in the atlas, in order of first appearance."""
        return list(dict.fromkeys(self.concepts))

    def table(self) -> xr.Dataset:
        """One row per prototype: concept, nearest training image and patch, wins."""
        return xr.Dataset(
            {
                "concept": ("prototype", np.asarray(self.concepts)),
                "source_sample": ("prototype", self.source_sample),
                "source_id": ("prototype", np.asarray(self.source_ids)),
                "source_y": ("prototype", self.source_y),
                "source_x": ("prototype", self.source_x),
                "source_cosine": ("prototype", self.source_cosine),
                "wins": ("prototype", self.wins),
            },
            coords={"prototype": self.names},
        )

    def of_concept(self, concept: str) -> list[str]:
        """Prototype names of ``concept`` (raises if the concept is not in the atlas)."""
        if concept not in self.concepts:
            raise UnknownNameError(
                unknown_names("concept", [concept], self.concept_names)
                + " Build the atlas with a bank that contains it."
            )
        return [n for n, c in zip(self.names, self.concepts, strict=True) if c == concept]

    def check_concepts(self, concepts: Sequence[str]) -> None:
        """Raise naming every concept of ``concepts`` that the atlas lacks."""
        missing = [c for c in names_list(concepts, "concepts") if c not in set(self.concepts)]
        if missing:
            raise UnknownNameError(
                f"concept(s) {missing} of the bank are missing from the atlas (it has "
                f"{self.concept_names}); rebuild the atlas with build_atlas(..., bank) or "
                "drop them from the bank"
            )

    def index(self, prototypes: Sequence[str]) -> np.ndarray:
        """Positions of prototype names (raises on unknown names)."""
        pos = {n: i for i, n in enumerate(self.names)}
        prototypes = names_list(prototypes, "prototypes")
        unknown = [p for p in prototypes if p not in pos]
        if unknown:
            raise UnknownNameError(
                unknown_names("prototype", unknown[:5], self.names).split("; the prototypes are")[
                    0
                ]
                + f"; names look like {self.names[:3]} (concept/number)"
            )
        return np.array([pos[p] for p in prototypes], dtype=np.int64)

    def drop(self, prototypes: Sequence[str]) -> PrototypeAtlas:
        """A new atlas without ``prototypes`` (a name or a list of names)."""
        keep = np.setdiff1d(np.arange(len(self)), self.index(prototypes))
        if not len(keep):
            raise DataError("dropping these prototypes would leave the atlas empty")
        return self._subset(keep)

    def _subset(self, keep: np.ndarray) -> PrototypeAtlas:
        return PrototypeAtlas(
            vectors=self.vectors[keep],
            names=[self.names[i] for i in keep],
            concepts=[self.concepts[i] for i in keep],
            source_sample=self.source_sample[keep],
            source_y=self.source_y[keep],
            source_x=self.source_x[keep],
            source_ids=[self.source_ids[i] for i in keep],
            source_cosine=self.source_cosine[keep],
            wins=self.wins[keep],
            grid=self.grid,
            image_size=self.image_size,
            info=dict(self.info),
            train_ids=list(self.train_ids),
        )

    def _check_patches(self, patches: Any) -> np.ndarray:
        p = unit_patches(patches)
        if p.shape[-1] != self.vectors.shape[1] or tuple(p.shape[1:3]) != tuple(self.grid):
            raise DataError(
                f"patch embeddings of shape {p.shape[1:]} do not match the atlas (grid "
                f"{tuple(self.grid)}, dim {self.vectors.shape[1]}); embed the images with "
                "the backbone the atlas was built with"
            )
        return p

    def similarity(self, patches: Any) -> xr.DataArray:
        """Cosine of every prototype with every patch.

        Returns
        -------
        xr.DataArray, dims ("sample", "prototype", "y", "x"), name "similarity"
        """
        p = self._check_patches(patches)
        n, gh, gw, d = p.shape
        # one 2-D matrix product (BLAS), much faster than a batched einsum for one image
        sim = (p.reshape(n * gh * gw, d) @ self.vectors.T).reshape(n, gh, gw, -1)
        sim = sim.transpose(0, 3, 1, 2)
        return xr.DataArray(
            sim.astype(np.float32, copy=False),
            dims=("sample", "prototype", "y", "x"),
            coords={"prototype": self.names, "concept": ("prototype", self.concepts)},
            name="similarity",
        )

    def activations(self, patches: Any) -> xr.DataArray:
        """Per prototype, the maximum cosine over the image's patches.

        Returns
        -------
        xr.DataArray, dims ("sample", "prototype"), name "activation"
        """
        return self.similarity(patches).max(("y", "x")).rename("activation")

    def concept_maps(self, patches: Any) -> xr.DataArray:
        """Per concept, the maximum similarity over its prototypes, on the patch grid.

        The prototype-based counterpart of :func:`conceptlens.spatial.concept_maps`
        (which compares patches with the concept's text embedding).

        Returns
        -------
        xr.DataArray, dims ("sample", "concept", "y", "x"), name "prototype_map"
        """
        sim = self.similarity(patches).values
        concepts = np.asarray(self.concepts)
        out = np.stack([sim[:, concepts == c].max(axis=1) for c in self.concept_names], axis=1)
        return xr.DataArray(
            out,
            dims=("sample", "concept", "y", "x"),
            coords={"concept": self.concept_names},
            name="prototype_map",
        )

    def winners(self, activations: np.ndarray) -> np.ndarray:
        """(N, n_concepts) position of each concept's winning prototype per image."""
        act = np.asarray(activations)
        out = np.empty((len(act), len(self.concept_names)), np.int64)
        for j, c in enumerate(self.concept_names):
            idx = np.flatnonzero(np.asarray(self.concepts) == c)
            out[:, j] = idx[np.argmax(act[:, idx], axis=1)]
        return out


def _kmeans_unit(x: np.ndarray, m: int, seed: int, n_iter: int = 50) -> np.ndarray:
    """Spherical k-means: k-means++ seeding, assign by cosine, renormalised mean centroids."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float32)
    centres = [x[rng.integers(len(x))]]
    d2 = np.full(len(x), np.inf, np.float32)
    for _ in range(1, m):
        d2 = np.minimum(d2, np.maximum(2.0 - 2.0 * (x @ centres[-1]), 0.0))
        total = float(d2.sum())
        i = int(rng.choice(len(x), p=d2 / total)) if total > 0 else int(rng.integers(len(x)))
        centres.append(x[i])
    c = np.stack(centres)
    assign = np.full(len(x), -1)
    for _ in range(n_iter):
        new = np.argmax(x @ c.T, axis=1)
        if np.array_equal(new, assign):
            break
        assign = new
        for k in range(m):
            members = x[assign == k]
            if len(members):
                c[k] = members.sum(axis=0)
        c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return c.astype(np.float32)


def _max_cos(flat: np.ndarray, protos: np.ndarray, n_patches: int) -> np.ndarray:
    """(n_images, n_protos) max cosine over each image's ``n_patches`` rows of ``flat``."""
    return (flat @ protos.T).reshape(-1, n_patches, len(protos)).max(axis=1)


def _win_counts(act: np.ndarray, rows: np.ndarray) -> np.ndarray:
    counts = np.zeros(act.shape[1], np.int64)
    if len(rows):
        np.add.at(counts, np.argmax(act[rows], axis=1), 1)
    return counts


def build_atlas(
    backbone: Any,
    patches: Any,
    bank: Any,
    *,
    n_prototypes: int = 5,
    top_fraction: float = 0.02,
    concept_labels: Any = None,
    mode: str = "cosine",
    templates: Any = None,
    reseed: bool = True,
    sample_ids: Sequence[str] | None = None,
    random_state: int = 0,
) -> PrototypeAtlas:
    """Cluster the training patches that activate each concept most into prototypes.

    Parameters
    ----------
    backbone : Backbone
        Gives the concepts' text directions (and its ``image_size``).
    patches : array (N, gh, gw, D)
        Training patch embeddings (:meth:`Backbone.patch_embeddings`, or
        :func:`conceptlens.spatial.patch_grid`).
    bank : ConceptBank or name
    n_prototypes : int, default 5
        Prototypes per concept (M).  The atlas part of ``benchmarks/bench_spatial.py``
        measures M in {1, 3, 5, 10} on SynthDerm.
    top_fraction : float, default 0.02
        Fraction of the candidate patches (the most concept-similar) that are clustered,
        at least ``4 * n_prototypes``.
    concept_labels : array (N, n_concepts) of 0/1, optional
        Ground-truth concept presence; candidates then come only from images where the
        concept is present, and wins are counted on those images.
    mode : {"cosine", "relative"}
        How the concept direction ranks patches (see :func:`concept_maps`).
    reseed : bool, default True
        Replace prototypes that win on no training image by the most concept-similar
        patch of the worst-served training image (repeated until all win or no image is
        left), so no prototype is dead.
    sample_ids : list of str, optional
        Ids of the training images, for the links.

    Returns
    -------
    PrototypeAtlas

    Examples
    --------
    >>> P, _ = bb.patch_embeddings(train_images)  # doctest: +SKIP
    >>> atlas = build_atlas(bb, P, "synthderm", n_prototypes=5)  # doctest: +SKIP
    >>> atlas.table().to_dataframe().head()  # doctest: +SKIP
    """
    from conceptlens.concepts import load_bank
    from conceptlens.spatial._maps import concept_directions

    if (
        not isinstance(n_prototypes, (int, np.integer))
        or isinstance(n_prototypes, bool)
        or n_prototypes < 1
    ):
        raise ConfigError(f"n_prototypes must be an int >= 1, got {n_prototypes!r}")
    m = int(n_prototypes)
    if not 0 < top_fraction <= 1:
        raise ConfigError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    bank = load_bank(bank)
    p = unit_patches(patches)
    n, gh, gw, d = p.shape
    ids = [str(s) for s in sample_ids] if sample_ids is not None else None
    if ids is not None and len(ids) != n:
        raise DataError(f"{len(ids)} sample_ids for {n} images")
    if ids is not None and len(set(ids)) != n:
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DataError(
            f"sample_ids repeat {dup}; each training image needs its own id, so that a "
            "prototype's source image can be found"
        )
    ids = ids or [f"img{i:06d}" for i in range(n)]
    weights, names, _ = concept_directions(backbone, bank, mode=mode, templates=templates)
    if weights.shape[1] != d:
        raise DataError(
            f"patches have dimension {d}, the backbone's text space {weights.shape[1]}"
        )
    labels = None
    if concept_labels is not None:
        labels = concept_label_matrix(
            concept_labels, names, n, "bank", ids if sample_ids is not None else None
        )
    flat = p.reshape(n * gh * gw, d)
    rng = np.random.default_rng(random_state)
    vectors, concepts, alive_before, reseeded = [], [], 0, 0
    for j, concept in enumerate(names):
        score = flat @ weights[j]
        rows = np.arange(n) if labels is None else np.flatnonzero(labels[:, j])
        if len(rows) == 0:
            raise DataError(
                f"concept {concept!r} is present in no training image (concept_labels); "
                "drop it from the bank or add images that show it"
            )
        if m > len(rows) * gh * gw:
            raise ConfigError(
                f"n_prototypes={m} but concept {concept!r} has only {len(rows) * gh * gw} "
                f"training patches ({len(rows)} image(s) x {gh * gw}); use n_prototypes <= "
                f"{len(rows) * gh * gw} (a handful per concept is typical) or more images"
            )
        cand = (rows[:, None] * gh * gw + np.arange(gh * gw)[None]).ravel()
        k = min(len(cand), max(4 * m, int(np.ceil(top_fraction * len(cand)))))
        top = cand[np.argsort(-score[cand], kind="stable")[:k]]
        protos = _kmeans_unit(flat[top], m, int(rng.integers(2**31 - 1)))
        sub = p[rows].reshape(len(rows) * gh * gw, d)
        act = _max_cos(sub, protos, gh * gw)  # (rows, m)
        wins = _win_counts(act, np.arange(len(rows)))
        alive_before += int((wins > 0).sum())
        if reseed:
            used: set[int] = set()
            for _ in range(m):
                dead = np.flatnonzero(wins == 0)
                if not len(dead):
                    break
                served = act.max(axis=1)
                order = [r for r in np.argsort(served, kind="stable") if r not in used]
                if not order:  # every image seeded one already: nothing left to try
                    break
                for q, r in zip(dead, order, strict=False):
                    patch_scores = p[rows[r]].reshape(gh * gw, d) @ weights[j]
                    protos[q] = p[rows[r]].reshape(gh * gw, d)[int(np.argmax(patch_scores))]
                    used.add(int(r))
                    reseeded += 1
                act = _max_cos(sub, protos, gh * gw)
                wins = _win_counts(act, np.arange(len(rows)))
        vectors.append(protos)
        concepts.extend([concept] * m)
    vec = np.concatenate(vectors).astype(np.float32)
    # links: nearest training patch of each prototype
    cos = flat @ vec.T  # (n*gh*gw, P)
    best = np.argmax(cos, axis=0)
    src, rem = np.divmod(best, gh * gw)
    sy, sx = np.divmod(rem, gw)
    act_all = cos.reshape(n, gh * gw, len(vec)).max(axis=1)
    win_total = np.zeros(len(vec), np.int64)
    concept_arr = np.asarray(concepts)
    for j, concept in enumerate(names):
        idx = np.flatnonzero(concept_arr == concept)
        rows = np.arange(n) if labels is None else np.flatnonzero(labels[:, j])
        win_total[idx] = _win_counts(act_all[:, idx], rows)
    counters = {c: 0 for c in names}
    proto_names = []
    for c in concepts:
        proto_names.append(f"{c}/{counters[c]}")
        counters[c] += 1
    return PrototypeAtlas(
        vectors=vec,
        names=proto_names,
        concepts=list(concepts),
        source_sample=src.astype(np.int64),
        source_y=sy.astype(np.int64),
        source_x=sx.astype(np.int64),
        source_ids=[ids[i] for i in src],
        source_cosine=cos[best, np.arange(len(vec))].astype(np.float32),
        wins=win_total,
        grid=(gh, gw),
        image_size=int(backbone.image_size),
        info={
            "n_prototypes": m,
            "top_fraction": float(top_fraction),
            "mode": mode,
            "bank": str(bank.id),
            "backbone": str(getattr(backbone, "name", "")),
            "backbone_fingerprint": str(getattr(backbone, "fingerprint", "")),
            "alive_before_reseed": int(alive_before),
            "alive": int((win_total > 0).sum()),
            "reseeded": int(reseeded),
            "total": len(vec),
        },
        train_ids=list(ids),
    )


def prototypes_on_masks(
    atlas: PrototypeAtlas, masks: Any, *, min_overlap: float = 0.5
) -> list[str]:
    """Prototypes whose linked training patch lies mostly inside ``masks``.

    Use it to find prototypes drawn from artifacts (rulers, ink) with artifact masks of the
    training images, then remove them with :meth:`PrototypeClassifier.remove_prototypes`.

    Parameters
    ----------
    atlas : PrototypeAtlas
    masks : bool array (N_train, H, W) or xr.DataArray (sample, y, x)
        Masks of the training images the atlas was built from (``H = W =
        atlas.image_size``): an array in the same order, one per training image; a
        DataArray with a ``sample`` coordinate is matched to the atlas's training ids
        (``atlas.train_ids``) by name.
    min_overlap : float in (0, 1], default 0.5
        Fraction of the linked patch's pixels that must be inside the mask.

    Returns
    -------
    list of str
    """
    from conceptlens.spatial._feedback import pool_to_grid

    if not 0 < min_overlap <= 1:
        raise ConfigError(f"min_overlap must be in (0, 1], got {min_overlap!r}")
    if isinstance(masks, xr.DataArray) and "sample" in masks.coords and atlas.train_ids:
        masks = select_samples(masks, atlas.train_ids, "masks")
    k = np.asarray(masks)
    s = atlas.image_size
    need = len(atlas.train_ids) or (int(atlas.source_sample.max()) + 1 if len(atlas) else 0)
    exact = bool(atlas.train_ids)
    if k.ndim != 3 or k.shape[1:] != (s, s) or len(k) < need or (exact and len(k) != need):
        raise DataError(
            f"masks must be (N_train, {s}, {s}), one per training image of the atlas "
            f"({'exactly' if exact else 'at least'} {need}, in the order it was built from), "
            f"got {k.shape}"
        )
    k = check_binary(k, "masks")
    cover = pool_to_grid(k.astype(np.float32), atlas.grid)
    frac = cover[atlas.source_sample, atlas.source_y, atlas.source_x]
    return [n for n, f in zip(atlas.names, frac, strict=True) if f >= min_overlap]
