"""``ConceptBottleneckClassifier``: the sparse head on labelled concept scores."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from conceptlens._label_check import check_labels
from conceptlens._samples import sample_values
from conceptlens.exceptions import ConfigError, DataError, unknown_names
from conceptlens.heads._base import as_matrix, folded_coef, labelled
from conceptlens.heads._cv import SparseLinearHeadCV
from conceptlens.heads._params import (
    CLASS_WEIGHT,
    CS,
    DEVICE,
    EPS,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    UNIT,
    ArrayLike,
    Boolean,
    validate_params,
)
from conceptlens.heads._sparse import SparseLinearHead

__all__ = ["STD_UNIT", "ConceptBottleneckClassifier"]

STD_UNIT = "weight per standard deviation of the concept score"


def _standardized(X) -> bool | None:
    """Whether labelled scores (or a saved head's ``trained_on_`` record of their attrs)
    were standardised: True (``ConceptStandardizer`` marked them), False (straight from
    ``score_concepts``: a ``score_mode`` and no mark), None (unknown: an array, or a
    DataArray without those attrs)."""
    attrs = X.attrs if isinstance(X, xr.DataArray) else X if isinstance(X, dict) else None
    if not attrs:
        return None
    if attrs.get("standardized") is not None:
        return str(attrs["standardized"]).strip().lower() in ("1", "true")
    return False if "score_mode" in attrs else None


class ConceptBottleneckClassifier(ClassifierMixin, BaseEstimator):
    """Sparse linear head on concept scores, with labelled coefficients.

    Parameters
    ----------
    C : float or None, default=None
        Fixed inverse regularisation strength; ``None`` selects it along the path
        (:class:`SparseLinearHeadCV`) on a validation split.
    l1_ratio : float, default=0.5
        Elastic-net mixing in [0, 1] (1 = lasso, 0 = ridge).
    Cs : int or array of float, default=50
        Path points (or values) when ``C`` is ``None``.
    eps : float in (0, 1), default=1e-3
        Ratio of the first to the last ``C`` of an integer ``Cs``.
    max_concepts_per_class : int >= 1 or None, default=None
        Largest number of concepts per class a selected head may use.
    validation_fraction : float in (0, 1), default=0.2
        Share of each class held out to select ``C`` (without a ``validation_mask``).
    class_weight : dict, "balanced" or None
        Multiplies the sample weights, as in scikit-learn.
    standardize : bool, default=True
        Penalise the weights of the standardised scores (see :class:`SparseLinearHead`).
    knowledge_prior : array or xr.DataArray (class, concept) of -1/0/1, optional
        KnoBo-style prior on the standardised weights, aligned by name when labelled;
        used only with a fixed ``C``.
    prior_strength : float, default=0.0
        Weight of the prior term.
    tol : float, default=1e-4
        Solver tolerance (relative KKT violation).
    max_iter : int, default=500
        Maximum proximal-Newton iterations per ``C``.
    refit : bool, default=True
        With ``C=None``: refit on training and validation rows at the selected ``C``;
        ``False`` keeps the head fitted on the training part only (it never saw the
        validation rows, so metrics on them are not from a model trained on them).
    random_state : int, numpy Generator or None, default=0
        Seed of the validation split.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
        Where the solver's passes over the scores run, as in :class:`SparseLinearHead`.

    Attributes
    ----------
    coef_ : xr.DataArray, dims ("class", "concept")
        Weights on the scale of the scores.  For two classes both rows are reported:
        the row of the second class is scikit-learn's single weight vector ``w``
        (log-odds of the second class against the first) and the first class's row is
        ``-w``, so each row reads as "evidence for this class against the other".
    coef_std_ : xr.DataArray, dims ("class", "concept")
        ``coef_`` times each concept's standard deviation in ``fit``: the weight per
        standard deviation of the score, the unit in which concepts are comparable and
        in which :meth:`top_concepts` ranks them.
    intercept_ : xr.DataArray, dims ("class",)
    classes_ : ndarray
        Sorted class labels.
    concept_names_ : ndarray of str
    head_ : SparseLinearHead or SparseLinearHeadCV
        The fitted head on the plain matrix.
    C_ : float
        The selected ``C`` (only when ``C`` is ``None``).
    n_features_in_ : int
    n_iter_ : int
    duality_gap_ : float
        Relative duality gap of the fitted head (``head_.duality_gap_``): a certified
        upper bound on how far its objective is above the optimum, relative to it.

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
    >>> cbm.predict_proba(s).dims
    ('sample', 'class')
    """

    _parameter_constraints: ClassVar[dict] = {
        "C": [None, POSITIVE],
        "l1_ratio": [UNIT],
        "Cs": CS,
        "eps": EPS,
        "max_concepts_per_class": [None, POSITIVE_INT],
        "validation_fraction": [FRACTION],
        "class_weight": CLASS_WEIGHT,
        "standardize": [Boolean],
        "knowledge_prior": [None, ArrayLike],
        "prior_strength": [NON_NEGATIVE],
        "tol": [POSITIVE],
        "max_iter": [POSITIVE_INT],
        "refit": [Boolean],
        "random_state": SEED,
        "device": DEVICE,
    }

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
        refit=True,
        random_state=0,
        device="auto",
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
        self.refit = refit
        self.random_state = random_state
        self.device = device

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
        return sample_values(X, y)

    def fit(self, X, y=None, sample_weight=None, validation_mask=None):
        """Fit on ``X`` (``concept_score`` DataArray or array) and labels ``y`` (array or
        the name of a sample coordinate of ``X``); ``validation_mask`` (bool, n_samples)
        marks the rows that select ``C`` (only with ``C=None``)."""
        validate_params(self, self._parameter_constraints)
        y = self._labels(X, y)
        if sample_weight is not None:
            sample_weight = sample_values(X, sample_weight, name="sample_weight")
        if validation_mask is not None:
            validation_mask = sample_values(X, validation_mask, name="validation_mask")
        text = np.asarray(y)
        if text.ndim == 1 and text.dtype.kind in "OUS":
            # a missing label or one spelled two ways would silently become a class
            check_labels(text.tolist(), min_count=1, where="y", rows="samples", option="")
        if isinstance(X, xr.DataArray):
            if X.ndim == 2 and "concept" in X.dims and X.dims[1] != "concept":
                X = X.transpose(..., "concept")  # (concept, sample) or another sample dim name
            names = (
                np.asarray(X["concept"].values).astype(str)
                if "concept" in X.coords
                else np.array([f"concept_{j}" for j in range(X.shape[1])])
            )
            uniq, counts = np.unique(names, return_counts=True)
            dup = uniq[counts > 1]
            if dup.size:
                raise DataError(
                    f"the scores name concept(s) {[str(c) for c in dup[:5]]} more than "
                    "once; a head needs one column per concept: drop the duplicates "
                    "(scores.drop_duplicates('concept'))."
                )
            n_y = len(y) if hasattr(y, "__len__") else None
            if n_y is not None and n_y != X.shape[0]:
                raise DataError(
                    f"{n_y} labels for {X.shape[0]} samples of the scores; pass one label per "
                    "sample (or the name of a sample coordinate, e.g. 'label')."
                )
        else:
            names = None
        Xm = as_matrix(X)
        common = dict(
            l1_ratio=self.l1_ratio,
            class_weight=self.class_weight,
            standardize=self.standardize,
            tol=self.tol,
            max_iter=self.max_iter,
            device=self.device,
        )
        if self.C is None and self.knowledge_prior is not None and self.prior_strength:
            raise ConfigError(
                "knowledge_prior is used only with a fixed C; pass C=... (for example the "
                "C_ selected by a first fit without the prior)."
            )
        if self.C is not None and validation_mask is not None:
            raise ConfigError(
                f"validation_mask selects C, but C={self.C!r} is fixed; pass C=None to select "
                "it on those rows, or fit only on the training rows."
            )
        if self.C is None:
            head: Any = SparseLinearHeadCV(
                Cs=self.Cs,
                eps=self.eps,
                max_concepts_per_class=self.max_concepts_per_class,
                validation_fraction=self.validation_fraction,
                refit=self.refit,
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
        self.scores_standardized_ = _standardized(X)
        self.n_iter_ = head.n_iter_
        self.duality_gap_ = head.duality_gap_
        self._set_labelled_coef()
        if self.C is None:
            self.C_ = head.C_
        return self

    def _set_labelled_coef(self):
        coef, intercept = folded_coef(self.head_)
        cls = [str(c) for c in self.classes_]
        self.coef_ = xr.DataArray(
            coef,
            dims=("class", "concept"),
            coords={"class": cls, "concept": self.concept_names_},
            name="coef",
        )
        self.intercept_ = xr.DataArray(
            intercept, dims=("class",), coords={"class": cls}, name="intercept"
        )

    @property
    def coef_std_(self):
        """``coef_`` per standard deviation of each concept's score in ``fit``."""
        check_is_fitted(self, "coef_")
        out = self.coef_ * np.asarray(self.head_.scale_)
        out.name = "coef_std"
        out.attrs["units"] = STD_UNIT
        return out

    def _matrix(self, X):
        check_is_fitted(self, "head_")
        fitted_on, given = getattr(self, "scores_standardized_", None), _standardized(X)
        record = getattr(self, "trained_on_", None) or {}
        if fitted_on is None and "standardized" in record:  # a head read by load_head
            fitted_on = _standardized(record)
        if fitted_on is not None and given is not None and fitted_on != given:
            word = {True: "standardised", False: "raw"}
            raise DataError(
                f"the head was fitted on {word[fitted_on]} concept scores, these are "
                f"{word[given]} (attrs 'standardized', 'score_mode'); pass "
                + (
                    "std.transform(scores) with the ConceptStandardizer fitted on the "
                    "training scores."
                    if fitted_on
                    else "the scores before ConceptStandardizer.transform."
                )
            )
        if isinstance(X, xr.DataArray) and "concept" in X.coords:
            missing = sorted(
                set(map(str, self.concept_names_)) - set(map(str, X["concept"].values))
            )
            if missing:
                raise DataError(
                    f"the scores lack {len(missing)} concept(s) the head was fitted on: "
                    f"{missing[:5]}{' ...' if len(missing) > 5 else ''}; score the same "
                    "concept bank."
                )
            X = X.transpose(..., "concept").sel(concept=self.concept_names_)
        return as_matrix(X)

    def decision_function(self, X):
        """Logits (n_samples,) for two classes (second vs first) else (n_samples, k).

        A labelled ``X`` gives a labelled ``(sample, class)`` DataArray equal to
        ``X @ coef_.T + intercept_`` (for two classes the columns are ``(-z, z)``).
        """
        Xm = self._matrix(X)
        return labelled(self.head_.decision_function(Xm), X, self.classes_, "logit")

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes); labelled ``(sample, class)`` when
        ``X`` is a labelled DataArray (columns in ``classes_`` order, named)."""
        Xm = self._matrix(X)
        return labelled(self.head_.predict_proba(Xm), X, self.classes_, "proba")

    def predict(self, X):
        """Predicted class labels (a 0/1 matrix for multi-label targets)."""
        Xm = self._matrix(X)
        return self.head_.predict(Xm)

    def score(self, X, y, sample_weight=None):
        """Accuracy on ``X``; ``y`` as in :meth:`fit` (array, Series or DataArray indexed by
        sample name, or the name of a sample coordinate)."""
        y = self._labels(X, y)
        if sample_weight is not None:
            sample_weight = sample_values(X, sample_weight, name="sample_weight")
        return super().score(X, y, sample_weight=sample_weight)

    def top_concepts(self, cls, k=5):
        """The ``k`` concepts with the largest positive weights for class ``cls``.

        Weights are ranked in one unit, the weight per standard deviation of the concept
        score (``coef_std_``), so a concept with a small score range is not hidden behind
        one with a large range.

        Returns
        -------
        xr.DataArray, dims ("concept",)
            Weights per standard deviation in decreasing order (non-zero, positive only);
            ``attrs["units"]`` names the unit.
        """
        check_is_fitted(self, "coef_")
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}.")
        key = str(cls)
        if key not in self.coef_["class"].values:
            raise DataError(unknown_names("class", [cls], self.coef_["class"].values))
        row = self.coef_std_.sel({"class": key})
        row = row[row > 0]
        order = np.argsort(-row.values, kind="stable")[: int(k)]
        return row.isel(concept=order)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
