"""``LinearProbe``: the black-box baseline on image embeddings (and PCBM-h residuals)."""

from __future__ import annotations

from typing import ClassVar

from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from conceptlens.exceptions import ConfigError
from conceptlens.heads._base import as_matrix, labelled, labels_from_logits, proba_from_logits
from conceptlens.heads._params import (
    CLASS_WEIGHT,
    POSITIVE,
    POSITIVE_INT,
    UNIT,
    Boolean,
    HasMethods,
    validate_params,
)
from conceptlens.heads._sparse import SparseLinearHead

__all__ = ["LinearProbe"]


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Black-box baseline: an L2 logistic probe on image embeddings.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength.
    l1_ratio : float, default=0.0
        Same objective as :class:`SparseLinearHead` (ridge by default).
    class_weight : dict, "balanced" or None
        As in :class:`SparseLinearHead`.
    standardize : bool, default=True
        As in :class:`SparseLinearHead`.
    residual : bool, default=False
        PCBM-h style hybrid.  When True, ``fit(X, y, concept_scores=...)`` first fits a
        concept head (``concept_head``, a :class:`SparseLinearHead` unless given), then
        fits the probe on the embeddings with the concept head's logits as a fixed
        offset, so the probe only models the residual; prediction adds both logits.
    concept_head : estimator, optional
        The concept head of the residual mode (cloned before fitting).
    tol : float, default=1e-4
    max_iter : int, default=500

    Attributes
    ----------
    probe_ : SparseLinearHead
        The fitted probe on the embeddings.
    concept_head_ : estimator
        The fitted concept head (residual mode only).
    coef_ : ndarray (k, n_features)
    intercept_ : ndarray (k,)
        The probe's weights (without the concept head's logits).
    classes_ : ndarray
    multilabel_ : bool
    n_features_in_ : int
    n_iter_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import LinearProbe
    >>> rng = np.random.default_rng(0)
    >>> E = rng.normal(size=(200, 8)); y = (E[:, 1] > 0).astype(int)
    >>> float(LinearProbe(C=1.0).fit(E, y).score(E, y)) > 0.9
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "C": [POSITIVE],
        "l1_ratio": [UNIT],
        "class_weight": CLASS_WEIGHT,
        "standardize": [Boolean],
        "residual": [Boolean],
        "concept_head": [None, HasMethods(("fit", "decision_function"))],
        "tol": [POSITIVE],
        "max_iter": [POSITIVE_INT],
    }

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

    def fit(self, X, y, sample_weight=None, concept_scores=None):
        """Fit on embeddings ``X`` (n_samples, dim); ``concept_scores`` for residual mode."""
        validate_params(self, self._parameter_constraints)
        offset = None
        if self.residual:
            if concept_scores is None:
                raise ConfigError(
                    "LinearProbe(residual=True) needs fit(X, y, concept_scores=...)."
                )
            ch = self.concept_head if self.concept_head is not None else SparseLinearHead()
            C = as_matrix(concept_scores)
            self.concept_head_ = clone(ch).fit(C, y, sample_weight=sample_weight)
            offset = self.concept_head_.decision_function(C)
            offset = offset[:, None] if offset.ndim == 1 else offset
        probe = SparseLinearHead(
            C=self.C,
            l1_ratio=self.l1_ratio,
            class_weight=self.class_weight,
            standardize=self.standardize,
            tol=self.tol,
            max_iter=self.max_iter,
        )._fit(as_matrix(X), y, sample_weight, offset)
        self.probe_ = probe
        self.n_iter_ = probe.n_iter_
        self.classes_ = probe.classes_
        self.multilabel_ = probe.multilabel_
        self.n_features_in_ = probe.n_features_in_
        if hasattr(probe, "feature_names_in_"):
            self.feature_names_in_ = probe.feature_names_in_
        self.coef_ = probe.coef_
        self.intercept_ = probe.intercept_
        return self

    def _logits(self, X, concept_scores):
        check_is_fitted(self, "probe_")
        out = self.probe_.decision_function(as_matrix(X))
        if self.residual:
            if concept_scores is None:
                raise ConfigError("residual mode needs concept_scores at prediction time too.")
            out = out + self.concept_head_.decision_function(as_matrix(concept_scores))
        return out

    def decision_function(self, X, concept_scores=None):
        """Probe logits, plus the concept head's in residual mode (labelled when ``X``
        is a labelled DataArray, as :meth:`SparseLinearHead.decision_function`)."""
        return labelled(self._logits(X, concept_scores), X, self.classes_, "logit")

    def predict_proba(self, X, concept_scores=None):
        """Class probabilities (n_samples, n_classes); per label for multi-label targets."""
        p = proba_from_logits(self._logits(X, concept_scores), self.multilabel_)
        return labelled(p, X, self.classes_, "proba")

    def predict(self, X, concept_scores=None):
        """Predicted class labels (a 0/1 matrix for multi-label targets)."""
        s = self._logits(X, concept_scores)
        return labels_from_logits(s, self.classes_, self.multilabel_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
