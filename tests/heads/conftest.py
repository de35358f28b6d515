"""Small synthetic concept-score problems shared by the heads tests."""

from __future__ import annotations

import numpy as np


def make_problem(seed, n=400, d=12, k=3, sparsity=0.3, scale=1.0):
    """Correlated standardised features, labels from a sparse multinomial model."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 3))
    X = factors @ rng.normal(size=(3, d)) * 0.5 + rng.normal(size=(n, d))
    X = (X - X.mean(0)) / X.std(0)
    W = rng.normal(size=(k, d)) * (rng.random((k, d)) < sparsity) * 2.0 * scale
    W[:, 0] += 1.5 * scale * np.arange(k)  # every class has signal
    y = np.argmax(X @ W.T + rng.gumbel(size=(n, k)), axis=1)
    return X, y
