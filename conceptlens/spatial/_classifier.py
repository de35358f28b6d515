"""Prototype classifier (similarity reasoning, CSR CVPR 2025) and atlas refinement.

Features are, per prototype of a :class:`PrototypeAtlas`, the maximum cosine between the
prototype and any patch of the image; the head is the sparse linear
:class:`conceptlens.heads.ConceptBottleneckClassifier` on those features.  Removing
prototypes refits only the head, on the cached training activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.spatial._atlas import PrototypeAtlas, concept_label_matrix, names_list

__all__ = ["PrototypeClassifier", "refinement_report"]


def _features(act: xr.DataArray | np.ndarray, names: Sequence[str]) -> xr.DataArray:
    """Activations as the (sample, concept) matrix the concept head expects."""
    values = act.values if isinstance(act, xr.DataArray) else np.asarray(act)
    return xr.DataArray(values, dims=("sample", "concept"), coords={"concept": list(names)})


class PrototypeClassifier(ClassifierMixin, BaseEstimator):
    """Max patch-prototype similarity -> sparse linear head.

    Parameters
    ----------
    atlas : PrototypeAtlas
        From :func:`conceptlens.spatial.build_atlas`.
    bank : ConceptBank or name, optional
        If given, ``fit`` checks that the atlas has prototypes for every concept of the
        bank (and names the missing ones).
    C, l1_ratio, max_concepts_per_class, class_weight, random_state
        Passed to :class:`conceptlens.heads.ConceptBottleneckClassifier` (whose
        "concepts" are here the prototypes; ``max_concepts_per_class`` caps the
        prototypes per class).

    Attributes
    ----------
    head_ : ConceptBottleneckClassifier
    prototypes_ : list of str
        Prototypes the head uses (the atlas's, minus any removed).
    coef_ : xr.DataArray, dims ("class", "prototype")
    intercept_ : xr.DataArray, dims ("class",)
    classes_ : ndarray
    train_activations_ : xr.DataArray, dims ("sample", "prototype")
        Kept so that :meth:`remove_prototypes` can refit the head without the images.
    typical_absent_ : xr.DataArray, dims ("prototype",)
        Per prototype, the median training activation over images where its concept is
        absent (needs ``concept_labels`` in :meth:`fit`); used by concept rejection.

    Examples
    --------
    >>> clf = PrototypeClassifier(atlas=atlas).fit(train_patches, y)  # doctest: +SKIP
    >>> clf.predict(test_patches)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        atlas: PrototypeAtlas | None = None,
        bank: Any = None,
        C: float | None = None,
        l1_ratio: float = 0.5,
        max_concepts_per_class: int | None = None,
        class_weight: Any = None,
        random_state: int = 0,
    ) -> None:
        self.atlas = atlas
        self.bank = bank
        self.C = C
        self.l1_ratio = l1_ratio
        self.max_concepts_per_class = max_concepts_per_class
        self.class_weight = class_weight
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def _new_head(self) -> Any:
        from conceptlens.heads import ConceptBottleneckClassifier

        return ConceptBottleneckClassifier(
            C=self.C,
            l1_ratio=self.l1_ratio,
            max_concepts_per_class=self.max_concepts_per_class,
            class_weight=self.class_weight,
            random_state=self.random_state,
        )

    def _atlas(self) -> PrototypeAtlas:
        if not isinstance(self.atlas, PrototypeAtlas):
            raise ConfigError(
                "PrototypeClassifier needs atlas=PrototypeAtlas (conceptlens.spatial.build_atlas)"
            )
        return self.atlas

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        concept_labels: Any = None,
        sample_ids: Sequence[str] | None = None,
    ) -> PrototypeClassifier:
        """Fit the head on the prototype activations of training images.

        Parameters
        ----------
        X : array (N, gh, gw, D)
            Patch embeddings of the training images.
        y : array (N,)
            Labels.
        concept_labels : array (N, n_concepts) of 0/1 or DataArray (sample, concept), optional
            Ground-truth concepts (columns in the atlas's concept order unless a
            DataArray); gives ``typical_absent_`` for concept rejection.
        sample_ids : list of str, optional
            Ids of the rows of ``X``; needed when ``concept_labels`` carry sample ids (a
            DataArray with a ``sample`` coordinate, a DataFrame indexed by id), which are
            then matched to them by id.
        """
        atlas = self._atlas()
        if self.bank is not None:
            from conceptlens.concepts import load_bank

            atlas.check_concepts([str(c.name) for c in load_bank(self.bank).concepts])
        act = atlas.activations(X)
        self._fit_activations(act.values, np.asarray(y), list(atlas.names))
        self.typical_absent_ = None
        if concept_labels is not None:
            ids = None if sample_ids is None else [str(i) for i in sample_ids]
            if ids is not None and len(ids) != len(act):
                raise DataError(f"{len(ids)} sample_ids for {len(act)} images")
            self.typical_absent_ = _typical_absent(atlas, act.values, concept_labels, ids)
        return self

    def _fit_activations(self, act: np.ndarray, y: np.ndarray, names: list[str]) -> None:
        if len(act) != len(y):
            raise DataError(f"{len(act)} images but {len(y)} labels")
        self._set_fitted(self._new_head().fit(_features(act, names), y), names, act, y)

    def _set_fitted(self, head: Any, names: list[str], act: np.ndarray, y: Any) -> None:
        """The fitted state from a fitted head on prototype features (also for loading)."""
        self.head_ = head
        self.prototypes_ = list(names)
        self.classes_ = head.classes_
        self.coef_ = head.coef_.rename({"concept": "prototype"})
        self.intercept_ = head.intercept_
        self.train_activations_ = xr.DataArray(
            act, dims=("sample", "prototype"), coords={"prototype": list(names)}
        )
        self.train_labels_ = np.asarray(y)

    # ------------------------------------------------------------------ prediction
    def activations(self, X: Any) -> xr.DataArray:
        """Prototype activations (sample, prototype) of the prototypes the head uses."""
        check_is_fitted(self, "head_")
        return self._atlas().activations(X).sel(prototype=self.prototypes_)

    def _head_input(self, act: Any) -> np.ndarray:
        """Activations as a matrix whose columns are ``prototypes_`` in order."""
        if isinstance(act, xr.DataArray):
            act = act.sel(prototype=self.prototypes_).values
        values = np.asarray(act, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(self.prototypes_):
            raise DataError(
                f"activations must be (n_samples, {len(self.prototypes_)}) in the order of "
                f"prototypes_, got {values.shape}"
            )
        return values

    def decision_from_activations(self, act: Any) -> np.ndarray:
        """Head logits from activations (sample, prototype)."""
        check_is_fitted(self, "head_")
        return self.head_.decision_function(self._head_input(act))

    def proba_from_activations(self, act: Any) -> np.ndarray:
        """Class probabilities (sample, class) from activations."""
        check_is_fitted(self, "head_")
        return self.head_.predict_proba(self._head_input(act))

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits, as :meth:`ConceptBottleneckClassifier.decision_function`."""
        return self.decision_from_activations(self.activations(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes)."""
        return self.proba_from_activations(self.activations(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels."""
        act = self.activations(X)
        return self.head_.predict(self._head_input(act))

    # ------------------------------------------------------------------ explanations
    def reliance(self, X: Any = None, *, activations: Any = None) -> xr.DataArray:
        """Prototype reliance: head weight x activation, per sample, class and prototype.

        Summed over prototypes and added to ``intercept_`` it gives each class's logit
        (for a binary head, the second class's row is the log-odds).  Unlike win counts,
        it says how much each prototype moves the decision.

        Returns
        -------
        xr.DataArray, dims ("sample", "class", "prototype"), name "reliance"
        """
        act = self.activations(X) if activations is None else activations
        a = act.sel(prototype=self.prototypes_) if isinstance(act, xr.DataArray) else act
        a = np.asarray(getattr(a, "values", a))
        out = a[:, None, :] * self.coef_.values[None]
        return xr.DataArray(
            out,
            dims=("sample", "class", "prototype"),
            coords={"class": self.coef_["class"].values, "prototype": self.prototypes_},
            name="reliance",
        )

    def evidence_maps(self, X: Any, *, target: Any = None) -> xr.DataArray:
        """Per-prototype evidence maps: similarity map x the target class's weight.

        Parameters
        ----------
        X : array (N, gh, gw, D)
        target : class label, optional
            Default: each sample's predicted class.

        Returns
        -------
        xr.DataArray, dims ("sample", "prototype", "y", "x"), name "evidence"
            The maximum of a map over (y, x) divided by the weight is that prototype's
            activation; only prototypes with a non-zero weight for the target are kept.
            Coordinate ``target`` (sample,).
        """
        check_is_fitted(self, "head_")
        sim = self._atlas().similarity(X).sel(prototype=self.prototypes_)
        classes = [str(c) for c in self.coef_["class"].values]
        if target is None:
            tgt = [str(t) for t in self.predict(X)]
        else:
            if str(target) not in classes:
                raise DataError(f"unknown class {target!r}; the classes are {classes}")
            tgt = [str(target)] * sim.sizes["sample"]
        w = self.coef_.sel({"class": tgt}).values  # (N, P)
        keep = np.flatnonzero(np.abs(w).max(axis=0) > 0)
        ev = sim.values[:, keep] * w[:, keep, None, None]
        return xr.DataArray(
            ev,
            dims=("sample", "prototype", "y", "x"),
            coords={
                "prototype": [self.prototypes_[i] for i in keep],
                "concept": ("prototype", [sim["concept"].values[i] for i in keep]),
                "target": ("sample", tgt),
            },
            name="evidence",
        )

    # ------------------------------------------------------------------ refinement
    def remove_prototypes(self, prototypes: Sequence[str]) -> PrototypeClassifier:
        """A copy without ``prototypes``; only the head is refitted (training activations).

        The atlas is unchanged; the removed prototypes get no weight and no evidence.
        ``prototypes`` is a name or a list of names of prototypes the head still uses;
        unknown names and prototypes removed before raise, naming them.
        """
        check_is_fitted(self, "head_")
        names = names_list(prototypes, "prototypes")
        drop = set(self._atlas().names[i] for i in self._atlas().index(names))
        gone = sorted(drop - set(self.prototypes_))
        if gone:
            raise DataError(
                f"prototype(s) {gone[:5]} were already removed from this classifier; remove "
                f"only prototypes it still uses ({len(self.prototypes_)} in prototypes_)"
            )
        keep = [p for p in self.prototypes_ if p not in drop]
        if not keep:
            raise DataError("removing these prototypes would leave the head with none")
        new = PrototypeClassifier(**self.get_params())
        act = self.train_activations_.sel(prototype=keep).values
        new._fit_activations(act, self.train_labels_, keep)
        new.typical_absent_ = (
            None if self.typical_absent_ is None else self.typical_absent_.sel(prototype=keep)
        )
        return new

    def remove_concepts(self, concepts: Sequence[str]) -> PrototypeClassifier:
        """A copy without all prototypes of ``concepts`` (a name or a list; head refitted only).

        Prototypes of these concepts removed before are skipped; a concept with none left
        raises.
        """
        check_is_fitted(self, "head_")
        atlas = self._atlas()
        left = {
            c: [n for n in atlas.of_concept(c) if n in self.prototypes_]
            for c in names_list(concepts, "concepts")
        }
        empty = [c for c, names in left.items() if not names]
        if empty:
            raise DataError(
                f"concept(s) {empty} have no prototypes left in this classifier (removed "
                "before); nothing to remove"
            )
        return self.remove_prototypes([n for names in left.values() for n in names])


def _typical_absent(
    atlas: PrototypeAtlas, act: np.ndarray, labels: Any, sample_ids: list[str] | None
) -> xr.DataArray:
    concepts = atlas.concept_names
    lab = concept_label_matrix(labels, concepts, len(act), "atlas", sample_ids)
    out = np.empty(len(atlas), np.float32)
    for j, c in enumerate(concepts):
        idx = np.flatnonzero(np.asarray(atlas.concepts) == c)
        absent = ~lab[:, j]
        if not absent.any():
            raise DataError(
                f"concept {c!r} is present in every training image, so its typical-absent "
                "value is undefined; add training images without it"
            )
        out[idx] = np.median(act[absent][:, idx], axis=0)
    return xr.DataArray(out, dims=("prototype",), coords={"prototype": atlas.names})


def refinement_report(
    before: PrototypeClassifier,
    after: PrototypeClassifier,
    X: Any = None,
    y: Any = None,
) -> dict[str, Any]:
    """What changed when prototypes were removed (and the head refitted).

    Parameters
    ----------
    before, after : fitted PrototypeClassifier
    X, y : optional evaluation patches (N, gh, gw, D) and labels

    Returns
    -------
    dict
        ``removed`` prototypes, ``n_nonzero`` before/after, ``removed_weight_share`` (share
        of the before head's absolute weight on the removed prototypes) and with ``X``,
        ``y``: ``accuracy`` before/after and ``changed`` (predictions that differ).
    """
    check_is_fitted(before, "head_")
    check_is_fitted(after, "head_")
    added = [p for p in after.prototypes_ if p not in set(before.prototypes_)]
    a, b = before.atlas, after.atlas
    same_atlas = a is b or (
        a is not None
        and b is not None
        and a.names == b.names
        and np.array_equal(a.vectors, b.vectors)
    )
    if added or not same_atlas:
        raise DataError(
            "after must be before refined (remove_prototypes / remove_concepts of the same "
            "classifier): "
            + (f"it uses prototypes {added[:5]} that before lacks" if added else "")
            + ("" if added else "it was built on another atlas")
            + "; did you swap before and after?"
        )
    removed = [p for p in before.prototypes_ if p not in set(after.prototypes_)]
    wb = np.abs(before.coef_.values)
    mask = np.isin(before.prototypes_, removed)
    out: dict[str, Any] = {
        "removed": removed,
        "n_nonzero": {
            "before": int((wb.max(axis=0) > 0).sum()),
            "after": int((np.abs(after.coef_.values).max(axis=0) > 0).sum()),
        },
        "removed_weight_share": float(wb[:, mask].sum() / max(wb.sum(), 1e-300)),
    }
    if X is not None and y is not None:
        act = before._atlas().activations(X)
        pb = before.head_.predict(before._head_input(act))
        pa = after.head_.predict(after._head_input(act))
        yy = np.asarray(y).astype(str)
        out["accuracy"] = {
            "before": float(np.mean(pb.astype(str) == yy)),
            "after": float(np.mean(pa.astype(str) == yy)),
        }
        out["changed"] = int(np.sum(pb.astype(str) != pa.astype(str)))
    return out
