"""The two-class coefficient convention of the labelled heads, in one place."""

from __future__ import annotations

import numpy as np

__all__ = ["fold_binary"]


def fold_binary(coef, intercept, n_classes, multilabel):
    """One row per class: a binary head's single row ``w`` becomes ``(-w, w)``.

    scikit-learn's binary logistic regression has one weight vector, the log-odds of the
    second class against the first.  The labelled coefficients report both rows, so each
    row reads as "evidence for this class against the other"; anything else (three or
    more classes, multi-label) is returned unchanged.

    Parameters
    ----------
    coef : ndarray (k, n_features)
    intercept : ndarray (k,)
    n_classes : int
    multilabel : bool

    Returns
    -------
    coef : ndarray (n_classes, n_features)
    intercept : ndarray (n_classes,)

    Examples
    --------
    >>> import numpy as np
    >>> c, b = fold_binary(np.array([[2.0, -1.0]]), np.array([0.5]), 2, False)
    >>> c.tolist(), b.tolist()
    ([[-2.0, 1.0], [2.0, -1.0]], [-0.5, 0.5])
    """
    coef = np.asarray(coef)
    intercept = np.asarray(intercept)
    if coef.shape[0] == 1 and n_classes == 2 and not multilabel:
        return np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
    return coef, intercept
