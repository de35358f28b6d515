"""scikit-learn estimators: sparse linear heads, the concept-bottleneck classifier, probes."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.heads import _path

__all__ = [
    "ConceptBottleneckClassifier",
    "LinearProbe",
    "SparseLinearHead",
    "SparseLinearHeadCV",
    "fit_path",
]

_OBJECTIVE_DOC = """
    The objective is scikit-learn's ``LogisticRegression(C=C, l1_ratio=l1_ratio,
    solver="saga")``, on the standardised inputs ``Z = (X - mean_) / scale_`` when
    ``standardize=True`` (the default) and on ``X`` itself otherwise::

        C * sum_i s_i * loss_i(W, b) + l1_ratio * |W|_1 + (1 - l1_ratio) / 2 * |W|_F^2
            + prior_strength / 2 * |W - prior|_F^2

    where ``s_i`` is the sample weight times the class weight of sample ``i``, the
    intercept ``b`` is not penalised, ``loss_i`` is the multinomial cross-entropy for
    three or more classes, the binary logistic loss of the second class against the
    first for two classes (one weight vector, as in scikit-learn), and the sum of binary
    logistic losses over labels for a multi-label target (one-vs-rest, ``y`` a 0/1
    matrix).  The prior term (KnoBo-style knowledge prior) is absent unless
    ``knowledge_prior`` is given.  ``mean_`` and ``scale_`` are the sample-weighted mean
    and standard deviation learned in ``fit`` (constant columns get scale 1); the
    reported ``coef_`` and ``intercept_`` are folded back to the scale of ``X``, so
    ``decision_function(X) = X @ coef_.T + intercept_``.  For three or more classes the
    intercepts are centred to sum to zero (the loss does not depend on their mean).
"""


def _warn_unconverged(converged, max_iter):
    if not np.all(converged):
        warnings.warn(
            f"the solver did not reach tol within max_iter={max_iter} iterations at "
            f"{int((~np.asarray(converged)).sum())} penalty value(s); increase max_iter or "
            "tol, or strengthen the penalty (nearly separable classes converge slowly).",
            ConvergenceWarning,
            stacklevel=3,
        )


def _encode_targets(y, classes=None):
    """Return (Y matrix, mode, classes, multilabel)."""
    y_type = type_of_target(y, input_name="y")
    if y_type == "multilabel-indicator":
        Y = np.asarray(y, dtype=float)
        return Y, "sigmoid", np.arange(Y.shape[1]), True
    check_classification_targets(y)
    classes = np.unique(y) if classes is None else classes
    if len(classes) < 2:
        raise DataError(
            f"only one class is present in y ({classes[0]!r}); a classifier needs samples "
            "of at least two classes: check the label column and the split."
        )
    codes = np.searchsorted(classes, y)
    if len(classes) == 2:
        return (codes == 1).astype(float)[:, None], "sigmoid", classes, False
    return np.eye(len(classes))[codes], "multinomial", classes, False


def _weighted_standardizer(X, sw):
    w = sw / sw.sum()
    mean = w @ X
    var = w @ (X - mean) ** 2
    scale = np.sqrt(var)
    scale[scale < 1e-12 * (1.0 + np.abs(mean))] = 1.0
    return mean, scale


class _HeadBase(ClassifierMixin, BaseEstimator):
    """Shared input handling, prediction and folding of the standardisation."""

    def _prepare(self, X, y, sample_weight):
        multi = (
            type_of_target(y, input_name="y") == "multilabel-indicator" if y is not None else False
        )
        X, y = validate_data(
            self, X, y, dtype=np.float64, order="C", multi_output=multi, y_numeric=False
        )
        Y, mode, classes, multilabel = _encode_targets(y)
        if not 0.0 <= float(self.l1_ratio) <= 1.0:
            raise ConfigError(f"l1_ratio must be in [0, 1], got {self.l1_ratio!r}.")
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if self.class_weight is not None:
            if multilabel:
                raise ConfigError(
                    "class_weight is not supported for multi-label targets; pass "
                    "sample_weight instead."
                )
            # as scikit-learn >= 1.6: "balanced" counts samples by their sample weight
            cw = compute_class_weight(self.class_weight, classes=classes, y=y, sample_weight=sw)
            sw = sw * cw[np.searchsorted(classes, y)]
        if sw.sum() <= 0:
            raise DataError("sample weights sum to zero; give some samples a positive weight.")
        if self.standardize:
            mean, scale = _weighted_standardizer(X, sw)
        else:
            mean, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
        Xs = np.ascontiguousarray((X - mean) / scale)
        prior = self._prior_matrix(Y.shape[1], X.shape[1], mode, multilabel, len(classes))
        return Xs, Y, sw, mode, classes, multilabel, mean, scale, prior

    def _prior_matrix(self, k, d, mode, multilabel, n_classes):
        if getattr(self, "knowledge_prior", None) is None or not self.prior_strength:
            return None
        P = np.asarray(self.knowledge_prior, dtype=float)
        rows = n_classes if not multilabel else k
        if P.shape != (rows, d):
            raise ConfigError(
                f"knowledge_prior has shape {P.shape}, expected (n_classes, n_features) = "
                f"({rows}, {d}); build it from the bank's class associations (-1/0/1)."
            )
        if mode == "sigmoid" and not multilabel:
            return 0.5 * (P[1] - P[0])[None, :]
        return P

    def _set_solution(self, W, b, mean, scale, classes, multilabel, mode):
        coef = W / scale
        self.coef_ = coef
        self.intercept_ = b - coef @ mean
        self.classes_ = classes
        self._multilabel = multilabel
        self._mode = mode
        self.mean_ = mean
        self.scale_ = scale

    def decision_function(self, X):
        """Logits: (n_samples,) for binary problems, else (n_samples, n_classes)."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        scores = X @ self.coef_.T + self.intercept_
        if scores.shape[1] == 1 and not self._multilabel:
            return scores[:, 0]
        return scores

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes); per-label for multi-label."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p1 = 1.0 / (1.0 + np.exp(-scores))
            return np.column_stack([1.0 - p1, p1])
        if self._multilabel:
            return 1.0 / (1.0 + np.exp(-scores))
        scores = scores - scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Predicted class labels (or a 0/1 matrix for multi-label)."""
        scores = self.decision_function(X)
        if self._multilabel:
            return (scores > 0).astype(int)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class SparseLinearHead(_HeadBase):
    __doc__ = (
        """Elastic-net logistic regression head (numba proximal-Newton solver).

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength, as in scikit-learn.
    l1_ratio : float, default=0.5
        Elastic-net mixing in [0, 1] (1 = lasso, 0 = ridge), as in scikit-learn.
    class_weight : dict, "balanced" or None
        Multiplies the sample weights, as in scikit-learn.
    standardize : bool, default=True
        Standardise features with the weighted mean and standard deviation in ``fit``.
    knowledge_prior : array (n_classes, n_features) of -1/0/1, optional
        KnoBo-style prior pulling the standardised weights towards these values (for a
        binary problem the single weight vector is pulled towards
        ``(prior[1] - prior[0]) / 2``).
    prior_strength : float, default=0.0
        Weight of the prior term.
    tol : float, default=1e-4
        Stop when the largest KKT violation is below ``tol`` times the largest loss
        gradient at the all-zero model.
    max_iter : int, default=500
        Maximum proximal-Newton iterations.

    Notes
    -----"""
        + _OBJECTIVE_DOC
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import SparseLinearHead
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5)); y = (X[:, 0] > 0).astype(int)
    >>> head = SparseLinearHead(C=0.1, l1_ratio=1.0).fit(X, y)
    >>> int(np.argmax(np.abs(head.coef_[0])))
    0
    """
    )

    def __init__(
        self,
        *,
        C=1.0,
        l1_ratio=0.5,
        class_weight=None,
        standardize=True,
        knowledge_prior=None,
        prior_strength=0.0,
        tol=1e-4,
        max_iter=500,
    ):
        self.C = C
        self.l1_ratio = l1_ratio
        self.class_weight = class_weight
        self.standardize = standardize
        self.knowledge_prior = knowledge_prior
        self.prior_strength = prior_strength
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X, y, sample_weight=None):
        """Fit the head; ``y`` is a label vector or a 0/1 (n_samples, n_labels) matrix."""
        return self._fit(X, y, sample_weight, None)

    def _fit(self, X, y, sample_weight, offset):
        Xs, Y, sw, mode, classes, multi, mean, scale, prior = self._prepare(X, y, sample_weight)
        if not float(self.C) > 0:
            raise ConfigError(f"C must be positive, got {self.C!r}.")
        path = _path.solve_path(
            Xs,
            Y,
            sw,
            mode,
            [float(self.C)],
            l1_ratio=float(self.l1_ratio),
            prior=prior,
            prior_strength=float(self.prior_strength),
            tol=self.tol,
            max_iter=self.max_iter,
            offset=offset,
        )
        self.n_iter_ = int(path.n_iter[0])
        self.converged_ = bool(path.converged[0])
        _warn_unconverged(path.converged, self.max_iter)
        self._set_solution(path.coef[0], path.intercept[0], mean, scale, classes, multi, mode)
        return self


def fit_path(
    X,
    y,
    *,
    Cs=50,
    eps=1e-3,
    l1_ratio=0.5,
    sample_weight=None,
    class_weight=None,
    standardize=True,
    tol=1e-4,
    max_iter=500,
):
    """Fit the elastic-net head along a path of ``C`` values, warm-started.

    Parameters
    ----------
    X : array (n_samples, n_features)
    y : array (n_samples,) or 0/1 (n_samples, n_labels)
    Cs : int or array
        Number of grid points (log-spaced from the ``C`` that zeroes every weight up to
        that value divided by ``eps``), or explicit values.
    l1_ratio, sample_weight, class_weight, standardize, tol, max_iter
        As in :class:`SparseLinearHead`.

    Returns
    -------
    dict
        ``Cs`` (n_C,) increasing; ``coef`` (n_C, k, n_features) and ``intercept``
        (n_C, k) on the scale of ``X``; ``n_nonzero`` (n_C, k); ``classes``;
        ``converged`` (n_C,).

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import fit_path
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 6)); y = np.argmax(X[:, :3], axis=1)
    >>> path = fit_path(X, y, Cs=5, l1_ratio=1.0)
    >>> int(path["n_nonzero"][0].sum())
    0
    """
    head = SparseLinearHead(
        l1_ratio=l1_ratio,
        class_weight=class_weight,
        standardize=standardize,
        tol=tol,
        max_iter=max_iter,
    )
    Xs, Y, sw, mode, classes, _, mean, scale, _ = head._prepare(X, y, sample_weight)
    if np.isscalar(Cs):
        cmin = _path.c_min(Xs, Y, sw, mode, float(l1_ratio))
        Cs = cmin * np.logspace(0, np.log10(1.0 / eps), int(Cs))
    p = _path.solve_path(Xs, Y, sw, mode, Cs, l1_ratio=float(l1_ratio), tol=tol, max_iter=max_iter)
    _warn_unconverged(p.converged, max_iter)
    coef = p.coef / scale
    intercept = p.intercept - coef @ mean
    return {
        "Cs": p.Cs,
        "coef": coef,
        "intercept": intercept,
        "n_nonzero": p.n_nonzero,
        "classes": classes,
        "converged": p.converged,
        "n_iter": p.n_iter,
    }


def _split(y_codes, fraction, seed):
    """Stratified split: boolean validation mask."""
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


class SparseLinearHeadCV(_HeadBase):
    """Elastic-net head with ``C`` chosen along a warm-started path on a validation split.

    The path runs from the ``C`` at which every weight is zero up to ``C / eps``
    (``Cs`` log-spaced points, or the given values) on the training part of a stratified
    split (``validation_fraction``, seeded with ``random_state``).  The selected ``C`` is
    the one with the best validation accuracy among the path points whose largest number
    of non-zero concepts per class is at most ``max_concepts_per_class`` (all points if
    ``None``); ties go to the sparser (smaller) ``C``.  With ``refit=True`` the head is
    refitted on all samples along the path up to the selected ``C`` (warm starts), and,
    if the budget is exceeded there, the largest ``C`` that respects it is used.
    """

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

    def fit(self, X, y, sample_weight=None, validation_mask=None):
        """Fit the path, select ``C``; ``validation_mask`` (bool, n_samples) overrides
        the random split."""
        Xs, Y, sw, mode, classes, multi, mean, scale, _ = self._prepare(X, y, sample_weight)
        codes = Y.argmax(axis=1) if mode == "multinomial" else Y[:, 0].astype(int)
        if multi:
            codes = np.zeros(len(Y), dtype=int)
        if validation_mask is None:
            val = _split(codes, float(self.validation_fraction), self.random_state)
        else:
            val = np.asarray(validation_mask, dtype=bool)
        tr = ~val
        if val.sum() == 0 or len(np.unique(codes[tr])) < (1 if multi else 2):
            val = np.zeros(len(Y), dtype=bool)
            tr = ~val
        if np.isscalar(self.Cs):
            cmin = _path.c_min(Xs[tr], Y[tr], sw[tr], mode, float(self.l1_ratio))
            Cs = cmin * np.logspace(0, np.log10(1.0 / self.eps), int(self.Cs))
        else:
            Cs = np.sort(np.asarray(self.Cs, dtype=float))
        path = _path.solve_path(
            np.ascontiguousarray(Xs[tr]),
            Y[tr],
            sw[tr],
            mode,
            Cs,
            l1_ratio=float(self.l1_ratio),
            tol=self.tol,
            max_iter=self.max_iter,
        )
        _warn_unconverged(path.converged, self.max_iter)
        nnz = path.n_nonzero.max(axis=1)
        ok = np.ones(len(Cs), dtype=bool)
        if self.max_concepts_per_class is not None:
            ok = nnz <= int(self.max_concepts_per_class)
            if not ok.any():
                ok[0] = True
        if val.any():
            Xv, Yv = Xs[val], Y[val]
            scores = np.einsum("nd,ckd->cnk", Xv, path.coef) + path.intercept[:, None, :]
            if mode == "multinomial":
                acc = (scores.argmax(axis=2) == Yv.argmax(axis=1)).mean(axis=1)
            else:
                acc = ((scores > 0) == (Yv > 0.5)).mean(axis=(1, 2))
        else:
            acc = np.zeros(len(Cs))
        cand = np.where(ok, acc, -np.inf)
        best = int(np.flatnonzero(cand == cand.max())[0])
        self.Cs_ = path.Cs
        self.validation_scores_ = acc
        self.n_nonzero_path_ = path.n_nonzero
        self.C_ = float(path.Cs[best])
        W, b = path.coef[best], path.intercept[best]
        if self.refit:
            full = _path.solve_path(
                Xs,
                Y,
                sw,
                mode,
                path.Cs[: best + 1],
                l1_ratio=float(self.l1_ratio),
                tol=self.tol,
                max_iter=self.max_iter,
            )
            pick = best
            if self.max_concepts_per_class is not None:
                fine = np.flatnonzero(
                    full.n_nonzero.max(axis=1) <= int(self.max_concepts_per_class)
                )
                pick = int(fine[-1]) if fine.size else 0
            self.C_ = float(full.Cs[pick])
            W, b = full.coef[pick], full.intercept[pick]
            self.n_iter_ = int(full.n_iter.sum())
        else:
            self.n_iter_ = int(path.n_iter.sum())
        self._set_solution(W, b, mean, scale, classes, multi, mode)
        return self


def _as_matrix(X):
    if isinstance(X, xr.DataArray):
        if X.ndim != 2:
            raise DataError(
                f"expected a 2-D concept_score DataArray (sample, concept), got dims {X.dims}."
            )
        return X.transpose(*X.dims).values
    return X


class ConceptBottleneckClassifier(ClassifierMixin, BaseEstimator):
    """Sparse linear head on concept scores, with labelled coefficients.

    Parameters
    ----------
    C : float or None, default=None
        Fixed inverse regularisation strength; ``None`` selects it along the path
        (:class:`SparseLinearHeadCV`).
    l1_ratio, Cs, eps, max_concepts_per_class, validation_fraction, class_weight,
    standardize, knowledge_prior, prior_strength, tol, max_iter, random_state
        As in :class:`SparseLinearHead` and :class:`SparseLinearHeadCV`
        (``knowledge_prior`` is used only with a fixed ``C``; it may be an
        ``xr.DataArray`` with dims ``("class", "concept")``, aligned by name).

    Attributes
    ----------
    coef_ : xr.DataArray, dims ("class", "concept")
        Weights on the input scale.  For two classes both rows are reported: the row of
        the second class is scikit-learn's single weight vector ``w`` (log-odds of the
        second class against the first) and the first class's row is ``-w``, so each
        row reads as "evidence for this class against the other".
    intercept_ : xr.DataArray, dims ("class",)
    classes_ : ndarray
    concept_names_ : ndarray of str

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.heads import ConceptBottleneckClassifier
    >>> rng = np.random.default_rng(0)
    >>> s = xr.DataArray(rng.normal(size=(300, 4)), dims=("sample", "concept"),
    ...                  coords={"concept": ["veil", "streaks", "ruler", "hair"]})
    >>> y = np.where(s.sel(concept="veil") > 0, "melanoma", "nevus")
    >>> cbm = ConceptBottleneckClassifier(C=0.05, l1_ratio=1.0).fit(s, y)
    >>> str(cbm.top_concepts("melanoma", k=1).concept.values[0])
    'veil'
    """

    def __init__(
        self,
        *,
        C=None,
        l1_ratio=0.5,
        Cs=50,
        eps=1e-3,
        max_concepts_per_class=None,
        validation_fraction=0.2,
        class_weight=None,
        standardize=True,
        knowledge_prior=None,
        prior_strength=0.0,
        tol=1e-4,
        max_iter=500,
        random_state=0,
    ):
        self.C = C
        self.l1_ratio = l1_ratio
        self.Cs = Cs
        self.eps = eps
        self.max_concepts_per_class = max_concepts_per_class
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.standardize = standardize
        self.knowledge_prior = knowledge_prior
        self.prior_strength = prior_strength
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    def _labels(self, X, y):
        if isinstance(y, str):
            if not isinstance(X, xr.DataArray) or y not in X.coords:
                have = list(X.coords) if isinstance(X, xr.DataArray) else []
                raise DataError(
                    f"label column {y!r} is not a sample coordinate of the scores "
                    f"(available: {have}); pass the labels as an array or pick one of these."
                )
            return X[y].values
        if y is None:
            raise DataError(
                f"{type(self).__name__} requires y to be passed, but the target y is None; "
                "pass labels or the name of a sample coordinate."
            )
        return y

    def fit(self, X, y=None, sample_weight=None, validation_mask=None):
        """Fit on ``X`` (``concept_score`` DataArray or array) and labels ``y`` (array or
        the name of a sample coordinate of ``X``)."""
        y = self._labels(X, y)
        if isinstance(X, xr.DataArray):
            if "concept" in X.dims and X.dims[0] != "sample" and "sample" in X.dims:
                X = X.transpose("sample", "concept")
            names = (
                np.asarray(X["concept"].values).astype(str)
                if "concept" in X.coords
                else np.array([f"concept_{j}" for j in range(X.shape[1])])
            )
        else:
            names = None
        Xm = _as_matrix(X)
        common = dict(
            l1_ratio=self.l1_ratio,
            class_weight=self.class_weight,
            standardize=self.standardize,
            tol=self.tol,
            max_iter=self.max_iter,
        )
        if self.C is None and self.knowledge_prior is not None and self.prior_strength:
            raise ConfigError(
                "knowledge_prior is used only with a fixed C; pass C=... (for example the "
                "C_ selected by a first fit without the prior)."
            )
        if self.C is None:
            head: Any = SparseLinearHeadCV(
                Cs=self.Cs,
                eps=self.eps,
                max_concepts_per_class=self.max_concepts_per_class,
                validation_fraction=self.validation_fraction,
                random_state=self.random_state,
                **common,
            )
            head.fit(Xm, y, sample_weight=sample_weight, validation_mask=validation_mask)
        else:
            prior = self.knowledge_prior
            if isinstance(prior, xr.DataArray):
                prior = prior.transpose("class", "concept")
                if names is not None:
                    prior = prior.reindex(concept=names, fill_value=0)
                cls = np.unique(np.asarray(y))
                prior = prior.reindex({"class": cls}, fill_value=0).values
            head = SparseLinearHead(
                C=self.C, knowledge_prior=prior, prior_strength=self.prior_strength, **common
            )
            head.fit(Xm, y, sample_weight=sample_weight)
        self.head_ = head
        self.classes_ = head.classes_
        self.n_features_in_ = head.n_features_in_
        if hasattr(head, "feature_names_in_"):
            self.feature_names_in_ = head.feature_names_in_
        if names is None:
            names = (
                np.asarray(head.feature_names_in_).astype(str)
                if hasattr(head, "feature_names_in_")
                else np.array([f"concept_{j}" for j in range(head.n_features_in_)])
            )
        self.concept_names_ = names
        self.n_iter_ = head.n_iter_
        coef, intercept = head.coef_, head.intercept_
        if coef.shape[0] == 1 and len(self.classes_) == 2 and not head._multilabel:
            coef = np.vstack([-coef, coef])
            intercept = np.concatenate([-intercept, intercept])
        cls = [str(c) for c in self.classes_]
        self.coef_ = xr.DataArray(
            coef,
            dims=("class", "concept"),
            coords={"class": cls, "concept": names},
            name="coef",
        )
        self.intercept_ = xr.DataArray(
            intercept, dims=("class",), coords={"class": cls}, name="intercept"
        )
        if self.C is None:
            self.C_ = head.C_
        return self

    def _matrix(self, X):
        check_is_fitted(self, "head_")
        if isinstance(X, xr.DataArray) and "concept" in X.coords:
            missing = sorted(set(self.concept_names_) - set(map(str, X["concept"].values)))
            if missing:
                raise DataError(
                    f"the scores lack concepts the head was fitted on: {missing[:5]}; score "
                    "the same concept bank."
                )
            X = X.transpose("sample", "concept").sel(concept=self.concept_names_)
        return _as_matrix(X)

    def decision_function(self, X):
        """Logits (n_samples,) for two classes (second vs first) else (n_samples, k)."""
        X = self._matrix(X)
        return self.head_.decision_function(X)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes)."""
        X = self._matrix(X)
        return self.head_.predict_proba(X)

    def predict(self, X):
        """Predicted class labels."""
        X = self._matrix(X)
        return self.head_.predict(X)

    def top_concepts(self, cls, k=5):
        """The ``k`` concepts with the largest positive weights for class ``cls``.

        Returns
        -------
        xr.DataArray, dims ("concept",)
            Weights sorted in decreasing order (non-zero, positive weights only).
        """
        check_is_fitted(self, "coef_")
        key = str(cls)
        if key not in self.coef_["class"].values:
            raise DataError(
                f"unknown class {cls!r}; the classes are {list(self.coef_['class'].values)}."
            )
        row = self.coef_.sel({"class": key})
        row = row[row > 0]
        order = np.argsort(-row.values, kind="stable")[: int(k)]
        return row.isel(concept=order)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Black-box baseline: an L2 logistic probe on image embeddings.

    Parameters
    ----------
    C : float, default=1.0
    l1_ratio : float, default=0.0
        Same objective as :class:`SparseLinearHead` (ridge by default).
    residual : bool, default=False
        PCBM-h style hybrid.  When True, ``fit(X, y, concept_scores=...)`` first fits a
        concept head (``concept_head``, a :class:`SparseLinearHead` unless given), then
        fits the probe on the embeddings with the concept head's logits as a fixed
        offset, so the probe only models the residual; prediction adds both logits.
    concept_head : estimator, optional

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import LinearProbe
    >>> rng = np.random.default_rng(0)
    >>> E = rng.normal(size=(200, 8)); y = (E[:, 1] > 0).astype(int)
    >>> float(LinearProbe(C=1.0).fit(E, y).score(E, y)) > 0.9
    True
    """

    def __init__(
        self,
        *,
        C=1.0,
        l1_ratio=0.0,
        class_weight=None,
        standardize=True,
        residual=False,
        concept_head=None,
        tol=1e-4,
        max_iter=500,
    ):
        self.C = C
        self.l1_ratio = l1_ratio
        self.class_weight = class_weight
        self.standardize = standardize
        self.residual = residual
        self.concept_head = concept_head
        self.tol = tol
        self.max_iter = max_iter

    def _probe(self):
        return SparseLinearHead(
            C=self.C,
            l1_ratio=self.l1_ratio,
            class_weight=self.class_weight,
            standardize=self.standardize,
            tol=self.tol,
            max_iter=self.max_iter,
        )

    def fit(self, X, y, sample_weight=None, concept_scores=None):
        """Fit on embeddings ``X`` (n_samples, dim); ``concept_scores`` for residual mode."""
        if self.residual:
            if concept_scores is None:
                raise ConfigError(
                    "LinearProbe(residual=True) needs fit(X, y, concept_scores=...)."
                )
            ch = self.concept_head if self.concept_head is not None else SparseLinearHead()
            from sklearn.base import clone

            self.concept_head_ = clone(ch).fit(
                _as_matrix(concept_scores), y, sample_weight=sample_weight
            )
        offset = None
        if self.residual:
            offset = self.concept_head_.decision_function(_as_matrix(concept_scores))
            offset = offset[:, None] if offset.ndim == 1 else offset
        probe = self._probe()._fit(X, y, sample_weight, offset)
        self.probe_ = probe
        self.n_iter_ = probe.n_iter_
        self.classes_ = probe.classes_
        self.n_features_in_ = probe.n_features_in_
        if hasattr(probe, "feature_names_in_"):
            self.feature_names_in_ = probe.feature_names_in_
        self.coef_ = probe.coef_
        self.intercept_ = probe.intercept_
        return self

    def decision_function(self, X, concept_scores=None):
        """Probe logits, plus the concept head's in residual mode."""
        check_is_fitted(self, "probe_")
        out = self.probe_.decision_function(X)
        if self.residual:
            if concept_scores is None:
                raise ConfigError("residual mode needs concept_scores at prediction time too.")
            out = out + self.concept_head_.decision_function(_as_matrix(concept_scores))
        return out

    def predict_proba(self, X, concept_scores=None):
        """Class probabilities (n_samples, n_classes)."""
        s = self.decision_function(X, concept_scores)
        if s.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-s))
            return np.column_stack([1 - p, p])
        s = s - s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X, concept_scores=None):
        """Predicted class labels."""
        s = self.decision_function(X, concept_scores)
        idx = (s > 0).astype(int) if s.ndim == 1 else s.argmax(axis=1)
        return self.classes_[idx]
