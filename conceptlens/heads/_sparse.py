"""``SparseLinearHead`` (one penalty) and ``fit_path`` (the whole regularisation path)."""

from __future__ import annotations

from typing import ClassVar

from conceptlens.heads import _device, _path
from conceptlens.heads._base import OBJECTIVE_DOC, HeadBase, warn_unconverged
from conceptlens.heads._params import (
    CLASS_WEIGHT,
    CS,
    DEVICE,
    EPS,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    UNIT,
    ArrayLike,
    Boolean,
    check_param,
)

__all__ = ["SparseLinearHead", "fit_path"]

_ATTRIBUTES_DOC = """
    Attributes
    ----------
    coef_ : ndarray (k, n_features)
        Weights on the scale of ``X``; ``k = 1`` for two classes (log-odds of the second
        class against the first, as scikit-learn), else one row per class or label.
    intercept_ : ndarray (k,)
    classes_ : ndarray
        Sorted class labels (label indices for a multi-label target).
    multilabel_ : bool
        Whether ``y`` was a 0/1 label matrix.
    mode_ : {"multinomial", "sigmoid"}
        The loss: softmax over classes, or independent binary losses.
    mean_, scale_ : ndarray (n_features,)
        Weighted mean and standard deviation of each feature in ``fit`` (sample weights
        times class weights; constant columns get scale 1).  ``coef_ * scale_`` is the
        weight per standard deviation of each feature.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string column names (a DataFrame).
"""


class SparseLinearHead(HeadBase):
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
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
        Where the solver's passes over ``X`` (its matrix products) run: ``"auto"`` uses
        a CUDA GPU through torch when one is available and ``n_samples * n_features``
        is at least 5e7 (torch is not imported for smaller problems), else numpy on the
        CPU.  The objective, stopping rule and certificate are the same; only the
        products' round-off differs, so solutions agree within the tolerance (to
        round-off at a tight ``tol``; see docs/heads.md, "GPU").
"""
        + _ATTRIBUTES_DOC
        + """    n_iter_ : int
        Proximal-Newton iterations used.
    converged_ : bool
        Whether the KKT violation fell below ``tol``.
    duality_gap_ : float
        Relative duality gap of the solution, ``(objective - dual bound) / objective``
        on the objective below: a certified upper bound on how far the objective is
        above its optimum, relative to the objective (computed once at the end of the
        fit, one pass over ``X``).

    Notes
    -----"""
        + OBJECTIVE_DOC
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

    _parameter_constraints: ClassVar[dict] = {
        "C": [POSITIVE],
        "l1_ratio": [UNIT],
        "class_weight": CLASS_WEIGHT,
        "standardize": [Boolean],
        "knowledge_prior": [None, ArrayLike],
        "prior_strength": [NON_NEGATIVE],
        "tol": [POSITIVE],
        "max_iter": [POSITIVE_INT],
        "device": DEVICE,
    }

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
        device="auto",
    ):
        self.C = C
        self.l1_ratio = l1_ratio
        self.class_weight = class_weight
        self.standardize = standardize
        self.knowledge_prior = knowledge_prior
        self.prior_strength = prior_strength
        self.tol = tol
        self.max_iter = max_iter
        self.device = device

    def fit(self, X, y, sample_weight=None):
        """Fit the head; ``y`` is a label vector or a 0/1 (n_samples, n_labels) matrix."""
        return self._fit(X, y, sample_weight, None)

    def _fit(self, X, y, sample_weight, offset):
        prep = self._prepare(X, y, sample_weight)
        path = _path.solve_path(
            prep.Xs,
            prep.Y,
            prep.sw,
            prep.mode,
            [float(self.C)],
            l1_ratio=float(self.l1_ratio),
            prior=prep.prior,
            prior_strength=float(self.prior_strength),
            tol=self.tol,
            max_iter=self.max_iter,
            offset=offset,
            device=self.device,
        )
        self.n_iter_ = int(path.n_iter[0])
        self.converged_ = bool(path.converged[0])
        self.duality_gap_ = float(path.duality_gap[0])
        warn_unconverged(path.converged, self.max_iter, path.duality_gap, self.tol)
        self._set_solution(path.coef[0], path.intercept[0], prep)
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
    device="auto",
):
    """Fit the elastic-net head along a path of ``C`` values, warm-started.

    Parameters
    ----------
    X : array (n_samples, n_features)
    y : array (n_samples,) or 0/1 (n_samples, n_labels)
    Cs : int or array
        Number of grid points (log-spaced from the ``C`` that zeroes every weight up to
        that value divided by ``eps``), or explicit values.
    eps : float in (0, 1), default=1e-3
        Ratio of the first to the last ``C`` of an integer ``Cs``.
    l1_ratio, sample_weight, class_weight, standardize, tol, max_iter, device
        As in :class:`SparseLinearHead`.

    Returns
    -------
    RegularizationPath
        ``Cs`` (n_C,) increasing; ``coef`` (n_C, k, n_features) and ``intercept``
        (n_C, k) on the scale of ``X``; ``n_nonzero`` (n_C, k); ``classes``;
        ``n_iter``, ``converged`` and ``duality_gap`` (n_C,; relative duality gap of
        each solution, as ``SparseLinearHead.duality_gap_``).

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import fit_path
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 6)); y = np.argmax(X[:, :3], axis=1)
    >>> path = fit_path(X, y, Cs=5, l1_ratio=1.0)
    >>> int(path.n_nonzero[0].sum())
    0
    """
    head = SparseLinearHead(
        l1_ratio=l1_ratio,
        class_weight=class_weight,
        standardize=standardize,
        tol=tol,
        max_iter=max_iter,
        device=device,
    )
    check_param("fit_path", "Cs", Cs, CS)
    check_param("fit_path", "eps", eps, EPS)
    prep = head._prepare(X, y, sample_weight)
    dev = _device.passes_for(prep.Xs, device)  # X on the device once, for grid and path
    Cs = _path.grid(prep.Xs, prep.Y, prep.sw, prep.mode, Cs, eps, float(l1_ratio), dev)
    p = _path.solve_path(
        prep.Xs,
        prep.Y,
        prep.sw,
        prep.mode,
        Cs,
        l1_ratio=float(l1_ratio),
        tol=tol,
        max_iter=max_iter,
        device=dev,
    )
    warn_unconverged(p.converged, max_iter, p.duality_gap, tol)
    coef, intercept = prep.fold(p.coef, p.intercept)
    return _path.RegularizationPath(
        p.Cs,
        coef,
        intercept,
        p.n_iter,
        p.converged,
        classes=prep.classes,
        duality_gap=p.duality_gap,
    )
