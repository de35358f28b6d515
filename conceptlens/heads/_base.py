"""What every head shares: targets, standardisation, prediction and labelled outputs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.heads._coef import fold_binary
from conceptlens.heads._params import validate_params

__all__ = [
    "OBJECTIVE_DOC",
    "as_matrix",
    "encode_targets",
    "labelled",
    "labels_from_logits",
    "proba_from_logits",
    "warn_unconverged",
    "weighted_standardizer",
]

OBJECTIVE_DOC = """
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
    ``knowledge_prior`` is given.  ``mean_`` and ``scale_`` are the weighted mean
    and standard deviation learned in ``fit`` (constant columns get scale 1); the
    reported ``coef_`` and ``intercept_`` are on the scale of ``X``, so
    ``decision_function(X) = X @ coef_.T + intercept_``.  For three or more classes the
    intercepts are centred to sum to zero (the loss does not depend on their mean).
"""

_LABELLED_DOC = """
    When ``X`` is an ``xr.DataArray`` with a ``sample`` dimension the result is an
    ``xr.DataArray`` with dims ``("sample", "class")``, the class names as the ``class``
    coordinate and every ``sample`` coordinate of ``X``{binary}.  NumPy in gives NumPy
    out, as scikit-learn expects.
"""


def warn_unconverged(converged, max_iter, gaps=None, tol=None):
    """One ConvergenceWarning naming how many penalty values did not reach ``tol``.

    With ``gaps`` (the relative duality gaps, one per penalty value) the message reports
    the largest gap among the unconverged ones, scikit-learn style.
    """
    converged = np.asarray(converged)
    if np.all(converged):
        return
    detail = ""
    if gaps is not None:
        worst = float(np.nanmax(np.asarray(gaps)[~converged]))
        detail = f" Duality gap: {worst:.1e} (relative to the objective)"
        detail += f", tolerance: {tol:.1e} (KKT, relative)." if tol is not None else "."
    warnings.warn(
        f"the solver did not reach tol within max_iter={max_iter} iterations at "
        f"{int((~converged).sum())} penalty value(s); increase max_iter or "
        "tol, or strengthen the penalty (nearly separable classes converge slowly)." + detail,
        ConvergenceWarning,
        stacklevel=3,
    )


def encode_targets(y, classes=None):
    """Return ``(Y matrix, mode, classes, multilabel)``."""
    y_type = type_of_target(y, input_name="y")
    if y_type == "multilabel-indicator":
        Y = np.asarray(y, dtype=float)
        return Y, "sigmoid", np.arange(Y.shape[1]), True
    check_classification_targets(y)
    classes = np.unique(y) if classes is None else classes
    if len(classes) < 2:
        raise DataError(
            f"only one class is present in y ({str(classes[0])!r}); a classifier needs samples "
            "of at least two classes: check the label column and the split."
        )
    codes = np.searchsorted(classes, y)
    if len(classes) == 2:
        return (codes == 1).astype(float)[:, None], "sigmoid", classes, False
    return np.eye(len(classes))[codes], "multinomial", classes, False


def weighted_standardizer(X, sw):
    """Weighted mean and standard deviation of each column (constant columns: scale 1)."""
    mean, scale, _ = _standardize(X, sw)
    return mean, scale


def _standardize(X, sw):
    """``(mean, scale, (X - mean) / scale)`` as :func:`weighted_standardizer`.

    One centred copy of ``X`` (C-ordered), filled and squared in blocks of rows of
    about 4 MB and then divided in place: no other full-size temporary.  Four of them
    (``(X - mean) ** 2`` and ``(X - mean) / scale``) cost about 8 ms of CPU at n=6,000
    d=300 and 2.8 s at n=50,000 d=2,000, most of it first-touching fresh memory.
    """
    w = sw / sw.sum()
    mean = w @ X
    n, d = X.shape
    Xs = np.empty((n, d))
    var = np.zeros(d)
    rows = max(1, (1 << 19) // max(d, 1))
    for i in range(0, n, rows):
        block = np.subtract(X[i : i + rows], mean, out=Xs[i : i + rows])
        var += w[i : i + rows] @ np.square(block)
    scale = np.sqrt(var)
    scale[scale < 1e-12 * (1.0 + np.abs(mean))] = 1.0
    Xs /= scale
    return mean, scale, Xs


def proba_from_logits(scores, multilabel):
    """Probabilities from logits: sigmoid per label, 2 columns for binary, else softmax."""
    if scores.ndim == 1:
        p1 = 1.0 / (1.0 + np.exp(-scores))
        return np.column_stack([1.0 - p1, p1])
    if multilabel:
        return 1.0 / (1.0 + np.exp(-scores))
    scores = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(scores)
    return e / e.sum(axis=1, keepdims=True)


def labels_from_logits(scores, classes, multilabel):
    """Predicted labels from logits: a 0/1 matrix for multi-label targets."""
    if multilabel:
        return (scores > 0).astype(int)
    if scores.ndim == 1:
        return classes[(scores > 0).astype(int)]
    return classes[np.argmax(scores, axis=1)]


def as_matrix(X):
    """A ``(sample, concept)`` DataArray as its values; anything else unchanged."""
    if isinstance(X, xr.DataArray):
        if X.ndim != 2:
            raise DataError(
                f"expected a 2-D concept_score DataArray (sample, concept), got dims {X.dims}."
            )
        if "sample" in X.dims and X.dims[0] != "sample":
            X = X.transpose("sample", ...)
        if X.shape[0] == 0:
            raise DataError(
                f"the scores hold 0 samples (dims {X.dims}, shape {X.shape}); the selection "
                "matched nothing: check the site, split or label value it was made with."
            )
        values = X.values
        if values.dtype.kind in "fc":
            bad = ~np.isfinite(values)
            if bad.any():
                rows, cols = np.flatnonzero(bad.any(axis=1)), np.flatnonzero(bad.any(axis=0))
                dim1 = X.dims[1]

                def names(dim, idx):
                    c = X[dim].values if dim in X.coords else idx
                    return [str(c[i]) for i in idx[:5]] + (["..."] if len(idx) > 5 else [])

                raise DataError(
                    f"the scores hold {int(bad.sum())} NaN or infinite value(s) in "
                    f"{len(rows)} sample(s) {names(X.dims[0], rows)}, in {dim1}(s) "
                    f"{names(dim1, cols)}; drop those samples (scores.dropna('sample')) or "
                    "rescore the images."
                )
        return values
    return X


def labelled(values, X, classes, name):
    """Wrap per-class outputs as ``(sample, class)`` when ``X`` is a labelled DataArray."""
    if not isinstance(X, xr.DataArray) or "sample" not in X.dims:
        return values
    if values.ndim == 1:  # binary logit z -> (-z, z), as the labelled coef_ rows
        values = np.column_stack([-values, values])
    coords = {k: v.variable for k, v in X.coords.items() if v.dims == ("sample",)}
    coords["class"] = [str(c) for c in classes]
    return xr.DataArray(values, dims=("sample", "class"), coords=coords, name=name)


@dataclass
class Prepared:
    """Validated inputs of one fit: solver inputs and the moments to fold back."""

    X: np.ndarray  # validated input
    Xs: np.ndarray  # what the solver sees (standardised when standardize=True)
    Y: np.ndarray  # (n, k) targets
    sw: np.ndarray  # sample x class weights
    mode: str  # "multinomial" or "sigmoid"
    classes: np.ndarray
    multilabel: bool
    mean: np.ndarray  # weighted mean of each column of X
    scale: np.ndarray  # weighted standard deviation (constant columns: 1)
    standardized: bool
    prior: np.ndarray | None

    def subset(self, rows):
        """The same inputs restricted to ``rows``, standardised with their own moments."""
        X, sw = self.X[rows], self.sw[rows]
        mean, scale, Xs = _standardize(X, sw)
        Xs = Xs if self.standardized else X
        return Prepared(
            X, Xs, self.Y[rows], sw, self.mode, self.classes, self.multilabel, mean, scale,
            self.standardized, self.prior,
        )  # fmt: skip

    def transform(self, X):
        """Other rows on the solver's scale (these moments)."""
        return (X - self.mean) / self.scale if self.standardized else X

    def fold(self, W, b):
        """Solver weights -> ``(coef, intercept)`` on the scale of ``X``."""
        if not self.standardized:
            return W, b
        coef = W / self.scale
        return coef, b - coef @ self.mean


class HeadBase(ClassifierMixin, BaseEstimator):
    """Shared input handling, prediction and folding of the standardisation."""

    _parameter_constraints: ClassVar[dict] = {}

    def _prepare(self, X, y, sample_weight):
        validate_params(self, self._parameter_constraints)
        multi = (
            type_of_target(y, input_name="y") == "multilabel-indicator" if y is not None else False
        )
        X, y = validate_data(
            self, as_matrix(X), y, dtype=np.float64, order="C", multi_output=multi, y_numeric=False
        )
        Y, mode, classes, multilabel = encode_targets(y)
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
        # mean_/scale_ are always the data's weighted moments (scale_ is the unit of the
        # per-standard-deviation rankings); the solver sees standardised inputs only when
        # standardize=True
        mean, scale, Xs = _standardize(X, sw)
        Xs = Xs if self.standardize else X
        prior = self._prior_matrix(Y.shape[1], X.shape[1], mode, multilabel, len(classes))
        return Prepared(
            X, Xs, Y, sw, mode, classes, multilabel, mean, scale, bool(self.standardize), prior
        )

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

    def _set_solution(self, W, b, prep):
        self.coef_, self.intercept_ = prep.fold(W, b)
        self.classes_ = prep.classes
        self.multilabel_ = prep.multilabel
        self.mode_ = prep.mode
        self.mean_ = prep.mean
        self.scale_ = prep.scale

    def decision_function(self, X):
        check_is_fitted(self, "coef_")
        Xm = validate_data(self, as_matrix(X), dtype=np.float64, reset=False)
        scores = Xm @ self.coef_.T + self.intercept_
        if scores.shape[1] == 1 and not self.multilabel_:
            scores = scores[:, 0]
        return labelled(scores, X, self.classes_, "logit")

    decision_function.__doc__ = (
        "Logits: (n_samples,) for binary problems, else (n_samples, n_classes).\n"
    ) + _LABELLED_DOC.format(
        binary=" (for two classes the columns are ``(-z, z)``, ``z`` the 1-D logit: "
        "one column per class, as the rows of the labelled ``coef_``)"
    )

    def predict_proba(self, X):
        scores = self.decision_function(as_matrix(X))
        return labelled(proba_from_logits(scores, self.multilabel_), X, self.classes_, "proba")

    predict_proba.__doc__ = (
        "Class probabilities (n_samples, n_classes); per label for multi-label targets.\n"
    ) + _LABELLED_DOC.format(binary="")

    def predict(self, X):
        """Predicted class labels (a 0/1 matrix for multi-label targets)."""
        scores = self.decision_function(as_matrix(X))
        return labels_from_logits(scores, self.classes_, self.multilabel_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


def folded_coef(head):
    """``(coef, intercept)`` of a fitted head with one row per class (see fold_binary)."""
    return fold_binary(head.coef_, head.intercept_, len(head.classes_), head.multilabel_)
