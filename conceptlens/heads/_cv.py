"""``SparseLinearHeadCV``: ``C`` chosen along the path on a validation split."""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np

from conceptlens.exceptions import ConceptLensWarning, ConfigError, DataError
from conceptlens.heads import _device, _path
from conceptlens.heads._base import OBJECTIVE_DOC, HeadBase, warn_unconverged
from conceptlens.heads._params import (
    CLASS_WEIGHT,
    CS,
    DEVICE,
    EPS,
    FRACTION,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    UNIT,
    Boolean,
)
from conceptlens.heads._sparse import _ATTRIBUTES_DOC

__all__ = ["SparseLinearHeadCV", "stratified_mask"]


def stratified_mask(y_codes, fraction, seed):
    """Stratified split: boolean validation mask (classes of one sample stay in training)."""
    rng = np.random.default_rng(seed)
    val = np.zeros(len(y_codes), dtype=bool)
    for c in np.unique(y_codes):
        idx = np.flatnonzero(y_codes == c)
        rng.shuffle(idx)
        n_val = round(fraction * len(idx))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val[idx[:n_val]] = True
    return val


class SparseLinearHeadCV(HeadBase):
    __doc__ = (
        """Elastic-net head with ``C`` chosen along a warm-started path on a validation split.

    The path runs from the ``C`` at which every weight is zero up to ``C / eps``
    (``Cs`` log-spaced points, or the given values) on the training part of a stratified
    split (``validation_fraction``, seeded with ``random_state``), or of the split given
    as ``fit(..., validation_mask=...)``.  The selected ``C`` is the one with the best
    validation accuracy among the path points whose largest number of non-zero concepts
    per class is at most ``max_concepts_per_class`` (all points if ``None``); ties go to
    the sparser (smaller) ``C``.  With ``refit=True`` the head is then refitted on all
    samples along the path up to the selected ``C`` (warm starts), and, if the budget is
    exceeded there, the largest ``C`` that respects it is used.  With ``refit=False`` the
    head is the one fitted on the training part only, so it never saw the validation
    rows.

    Parameters
    ----------
    Cs : int or array of float, default=50
        Number of path points, or explicit positive values.
    eps : float in (0, 1), default=1e-3
        Ratio of the first to the last ``C`` of an integer ``Cs``.
    l1_ratio : float, default=0.5
        Elastic-net mixing in [0, 1], as in :class:`SparseLinearHead`.
    max_concepts_per_class : int >= 1 or None, default=None
        Largest number of non-zero weights per class a selected head may have.
    validation_fraction : float in (0, 1), default=0.2
        Share of each class held out when no ``validation_mask`` is given.
    class_weight, standardize, tol, max_iter, device
        As in :class:`SparseLinearHead`.
    refit : bool, default=True
        Refit on all samples (training and validation) at the selected ``C``.
    random_state : int, numpy Generator or None, default=0
        Seed of the validation split.
"""
        + _ATTRIBUTES_DOC
        + """    C_ : float
        The selected ``C`` (after the budget check of the refit).
    Cs_ : ndarray (n_C,)
        The path's ``C`` values, increasing.
    validation_scores_ : ndarray (n_C,)
        Validation accuracy at each path point (per-label accuracy for multi-label).
    n_nonzero_path_ : ndarray (n_C, k)
        Non-zero weights per class at each path point (training part).
    validation_mask_ : ndarray of bool (n_samples,)
        The rows used for validation.
    n_iter_ : int
        Proximal-Newton iterations over the whole path (and refit).
    duality_gap_ : float
        Relative duality gap of the selected head on its own fit (training part, or
        all samples after the refit), as ``SparseLinearHead.duality_gap_``.

    Raises
    ------
    DataError
        When the validation part is empty, or a class (or a label's positives) is
        missing from the training part: the selection would be meaningless.
    ConfigError
        When no point of the path meets ``max_concepts_per_class``.

    Notes
    -----"""
        + OBJECTIVE_DOC
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import SparseLinearHeadCV
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 6)); y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> cv = SparseLinearHeadCV(Cs=10, l1_ratio=1.0, max_concepts_per_class=2).fit(X, y)
    >>> int((cv.coef_ != 0).sum()) <= 2
    True
    """
    )

    _parameter_constraints: ClassVar[dict] = {
        "Cs": CS,
        "eps": EPS,
        "l1_ratio": [UNIT],
        "max_concepts_per_class": [None, POSITIVE_INT],
        "validation_fraction": [FRACTION],
        "class_weight": CLASS_WEIGHT,
        "standardize": [Boolean],
        "tol": [POSITIVE],
        "max_iter": [POSITIVE_INT],
        "refit": [Boolean],
        "random_state": SEED,
        "device": DEVICE,
    }

    def __init__(
        self,
        *,
        Cs=50,
        eps=1e-3,
        l1_ratio=0.5,
        max_concepts_per_class=None,
        validation_fraction=0.2,
        class_weight=None,
        standardize=True,
        tol=1e-4,
        max_iter=500,
        refit=True,
        random_state=0,
        device="auto",
    ):
        self.Cs = Cs
        self.eps = eps
        self.l1_ratio = l1_ratio
        self.max_concepts_per_class = max_concepts_per_class
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.standardize = standardize
        self.tol = tol
        self.max_iter = max_iter
        self.refit = refit
        self.random_state = random_state
        self.device = device

    def _validation_split(self, prep, validation_mask, classes):
        Y, n = prep.Y, len(prep.Y)
        if prep.multilabel:
            codes = np.zeros(n, dtype=int)
        elif prep.mode == "multinomial":
            codes = Y.argmax(axis=1)
        else:
            codes = Y[:, 0].astype(int)
        if validation_mask is None:
            val = stratified_mask(codes, float(self.validation_fraction), self.random_state)
            if not val.any():
                raise DataError(
                    f"no class has the 2 samples needed to hold one out for validation "
                    f"(n_samples={n}); give more samples, a validation_mask, or a fixed C "
                    "(SparseLinearHead)."
                )
        else:
            val = np.asarray(validation_mask)
            if val.dtype != bool or val.shape != (n,):
                raise DataError(
                    f"validation_mask must be a boolean array of length n_samples={n}; got "
                    f"dtype {val.dtype} and shape {val.shape}."
                )
            if not val.any():
                raise DataError(
                    "validation_mask selects no sample: C would be chosen on nothing; mark "
                    "the validation rows True, or use a fixed C (SparseLinearHead)."
                )
            if val.all():
                raise DataError(
                    "validation_mask selects every sample: nothing is left to train on; mark "
                    "only the validation rows True."
                )
        tr = ~val
        if prep.multilabel:
            pos = Y[tr].sum(axis=0)
            empty = [int(j) for j in np.flatnonzero((pos == 0) | (pos == tr.sum()))]
            if empty:
                raise DataError(
                    f"labels {empty} are constant in the training part of the split (all 0 or "
                    "all 1), so their heads would be intercept-only; change the split."
                )
        else:
            weight = np.bincount(codes[tr], weights=prep.sw[tr], minlength=len(classes))
            missing = [str(classes[c]) for c in np.flatnonzero(weight <= 0)]
            if missing:
                raise DataError(
                    f"class(es) {missing} have no sample with a positive weight in the training "
                    "part of the split, so the head could never predict them; put some of "
                    "their samples in training (validation_mask False)."
                )
        return val

    def fit(self, X, y, sample_weight=None, validation_mask=None):
        """Fit the path, select ``C``; ``validation_mask`` (bool, n_samples) marks the
        validation rows instead of the random split."""
        prep = self._prepare(X, y, sample_weight)
        val = self._validation_split(prep, validation_mask, prep.classes)
        # the path is fitted and standardised on the training part only: the validation
        # rows select C without shaping the model that is scored on them
        part = prep.subset(~val)
        dev = _device.passes_for(part.Xs, self.device)  # X on the device once
        Cs = _path.grid(part.Xs, part.Y, part.sw, part.mode, self.Cs, self.eps, self.l1_ratio, dev)
        path = _path.solve_path(
            part.Xs,
            part.Y,
            part.sw,
            part.mode,
            Cs,
            l1_ratio=float(self.l1_ratio),
            tol=self.tol,
            max_iter=self.max_iter,
            device=dev,
        )
        del dev  # free the training part's device copy before the refit
        warn_unconverged(path.converged, self.max_iter, path.duality_gap, self.tol)
        nnz = path.n_nonzero.max(axis=1)
        ok = np.ones(len(Cs), dtype=bool)
        budget = self.max_concepts_per_class
        if budget is not None:
            ok = nnz <= int(budget)
            if not ok.any():
                raise ConfigError(
                    f"no C on the path gives at most max_concepts_per_class={budget} concepts "
                    f"per class (the sparsest point, C={path.Cs[0]:.4g}, uses {int(nnz.min())}); "
                    "pass smaller Cs values, or an integer Cs so that the path starts where "
                    "every weight is zero."
                )
        Xv, Yv = part.transform(prep.X[val]), prep.Y[val]
        scores = np.einsum("nd,ckd->cnk", Xv, path.coef) + path.intercept[:, None, :]
        if prep.mode == "multinomial":
            acc = (scores.argmax(axis=2) == Yv.argmax(axis=1)).mean(axis=1)
        else:
            acc = ((scores > 0) == (Yv > 0.5)).mean(axis=(1, 2))
        cand = np.where(ok, acc, -np.inf)
        best = int(np.flatnonzero(cand == cand.max())[0])
        self.Cs_ = path.Cs
        self.validation_scores_ = acc
        self.n_nonzero_path_ = path.n_nonzero
        self.validation_mask_ = val
        self.C_ = float(path.Cs[best])
        W, b, fitted = path.coef[best], path.intercept[best], part
        self.n_iter_ = int(path.n_iter.sum())
        self.duality_gap_ = float(path.duality_gap[best])
        if self.refit:
            full = _path.solve_path(
                prep.Xs,
                prep.Y,
                prep.sw,
                prep.mode,
                path.Cs[: best + 1],
                l1_ratio=float(self.l1_ratio),
                tol=self.tol,
                max_iter=self.max_iter,
                device=self.device,
            )
            pick = best
            if budget is not None:
                fine = np.flatnonzero(full.n_nonzero.max(axis=1) <= int(budget))
                pick = int(fine[-1]) if fine.size else -1
            if pick < 0:
                warnings.warn(
                    f"refitting on all samples exceeds max_concepts_per_class={budget} at "
                    f"every C up to the selected one; keeping the head fitted on the training "
                    f"part (C={self.C_:.4g}). Pass refit=False to always keep it.",
                    ConceptLensWarning,
                    stacklevel=2,
                )
            else:
                self.C_ = float(full.Cs[pick])
                W, b, fitted = full.coef[pick], full.intercept[pick], prep
                self.n_iter_ = int(full.n_iter.sum())
                self.duality_gap_ = float(full.duality_gap[pick])
        if not np.any(W):
            warnings.warn(
                f"the selected head (C={self.C_:.4g}) uses no feature: it predicts from the "
                "intercept (class frequencies) only. The features carry no signal the "
                "validation split could confirm; check the labels and the scores, or fit a "
                "fixed C.",
                ConceptLensWarning,
                stacklevel=2,
            )
        self._set_solution(W, b, fitted)
        return self
