"""DeLong's test for two correlated AUROCs (DeLong, DeLong & Clarke-Pearson 1988).

The fast midrank form of Sun & Xu (2014): the structural components of each AUROC come
from three rankings (positives, negatives, both), so the test costs O(n log n).
"""

from __future__ import annotations

import math

import numpy as np

from conceptlens.exceptions import DataError

__all__ = ["delong_test"]


def _midranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = len(x)
    ranks = np.empty(n)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and xs[j + 1] == xs[i]:
            j += 1
        ranks[i : j + 1] = 0.5 * (i + j) + 1.0
        i = j + 1
    out = np.empty(n)
    out[order] = ranks
    return out


def _components(scores: np.ndarray, positive: np.ndarray):
    """AUROC (r,), V10 (r, m) and V01 (r, n) of each row of ``scores`` (r, N)."""
    pos, neg = scores[:, positive], scores[:, ~positive]
    m, n = pos.shape[1], neg.shape[1]
    auc = np.empty(len(scores))
    v10 = np.empty((len(scores), m))
    v01 = np.empty((len(scores), n))
    for r in range(len(scores)):
        tx, ty = _midranks(pos[r]), _midranks(neg[r])
        tz = _midranks(np.concatenate([pos[r], neg[r]]))
        auc[r] = (tz[:m].sum() - m * (m + 1) / 2.0) / (m * n)
        v10[r] = (tz[:m] - tx) / n
        v01[r] = 1.0 - (tz[m:] - ty) / m
    return auc, v10, v01


def delong_test(y_true, score_a, score_b) -> dict[str, float]:
    """DeLong's test of the difference between two AUROCs on the same cases.

    Parameters
    ----------
    y_true : array (n_samples,)
        Binary truth (``True``/1 is the positive class).
    score_a, score_b : array (n_samples,)
        Scores of the two models for the positive class, on the same cases.

    Returns
    -------
    dict
        ``auroc_a``, ``auroc_b``, ``difference`` (a - b), ``se`` (its standard error),
        ``z`` and the two-sided ``p_value`` (normal approximation).  ``se`` is 0 and
        ``z``/``p_value`` nan when the two score vectors rank the cases identically.

    Raises
    ------
    DataError
        Fewer than two positives or two negatives, or lengths that differ.

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.studies import delong_test
    >>> y = np.array([0, 0, 0, 1, 1, 1])
    >>> r = delong_test(y, [0.1, 0.4, 0.35, 0.8, 0.5, 0.9], [0.2, 0.1, 0.6, 0.3, 0.7, 0.8])
    >>> round(r["auroc_a"], 3), round(r["auroc_b"], 3)
    (1.0, 0.889)
    """
    y = np.asarray(y_true).astype(bool)
    scores = np.vstack([np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)])
    if scores.shape[1] != y.shape[0]:
        raise DataError(
            f"delong_test: y_true has {y.shape[0]} cases but the scores have "
            f"{scores.shape[1]}; pass both models' scores on the same cases."
        )
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise DataError(
            f"delong_test needs at least 2 positive and 2 negative cases (got {m} and {n})."
        )
    auc, v10, v01 = _components(scores, y)
    s10 = np.cov(v10)
    s01 = np.cov(v01)
    contrast = np.array([1.0, -1.0])
    var = float(contrast @ s10 @ contrast / m + contrast @ s01 @ contrast / n)
    diff = float(auc[0] - auc[1])
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        z = p = math.nan
    else:
        z = diff / se
        p = math.erfc(abs(z) / math.sqrt(2.0))
    return {
        "auroc_a": float(auc[0]),
        "auroc_b": float(auc[1]),
        "difference": diff,
        "se": se,
        "z": z,
        "p_value": p,
    }
