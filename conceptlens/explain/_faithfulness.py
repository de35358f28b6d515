"""Faithfulness checks of concept explanations.

* Deletion and insertion curves (Petsiuk et al. 2018, RISE, applied to concepts rather
  than pixels): concepts are removed from (or added to) a prediction in the order of their
  contribution and the model re-predicts; a faithful ranking makes the predicted class's
  probability fall (deletion) or rise (insertion) faster than a random order.  "Removed"
  means set to its baseline (the training mean), where its contribution is zero.
* The effective number of concepts behind each decision: the inverse participation ratio
  ``(sum |m_j|)^2 / sum m_j^2`` of the margin contributions ``m_j`` (predicted class minus
  runner-up), between 1 (one concept decides) and the number of concepts (all equally).
* The random-words control (as in LaBo and Label-free CBM's sanity checks): a bank of the
  same size made of random words, scored by the same backbone and fitted with the same
  head; if it does nearly as well, the concepts are not what does the work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from conceptlens._numeric import trapezoid as _trapezoid
from conceptlens.exceptions import ConfigError, DataError
from conceptlens.explain._linear import concept_matrix, contributions, head_parameters

__all__ = [
    "deletion_insertion",
    "effective_concepts",
    "random_words_control",
]

#: Everyday words with no dermatological meaning, for the random-words control bank.
# fmt: off
# fmt: on


def _predicted_rows(c: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the predicted class and of the runner-up, per sample."""
    logit = (c.sum("concept") + c["base_value"]).values
    order = np.argsort(-logit, axis=1, kind="stable")
    return order[:, 0], order[:, 1]


def effective_concepts(contributions: xr.DataArray) -> xr.DataArray:
    """Effective number of concepts behind each decision.

    Parameters
    ----------
    contributions : xr.DataArray (sample, class, concept)
        Output of :func:`conceptlens.explain.contributions`.

    Returns
    -------
    xr.DataArray, dims ("sample",), name "effective_concepts"
        ``(sum_j |m_j|)^2 / sum_j m_j^2`` with ``m_j`` the contribution of concept ``j``
        to the margin between the predicted class and the runner-up (NaN when every
        contribution is zero).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> c = xr.DataArray(np.array([[[0, 0, 0], [2.0, 0, 0]], [[0, 0, 0], [1, 1, 0]]]),
    ...                  dims=("sample", "class", "concept"),
    ...                  coords={"base_value": ("class", [0.0, 0.0])})
    >>> effective_concepts(c).values.tolist()
    [1.0, 2.0]
    """
    if not isinstance(contributions, xr.DataArray) or set(contributions.dims) != {
        "sample",
        "class",
        "concept",
    }:
        raise DataError("expected contributions with dims ('sample', 'class', 'concept').")
    c = contributions.transpose("sample", "class", "concept")
    top, second = _predicted_rows(c)
    rows = np.arange(c.sizes["sample"])
    m = c.values[rows, top] - c.values[rows, second]
    num = np.abs(m).sum(axis=1) ** 2
    den = (m**2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        val = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    coords = {"sample": c["sample"].values} if "sample" in c.coords else {}
    return xr.DataArray(val, dims=("sample",), coords=coords, name="effective_concepts")


def _auc(curve: np.ndarray) -> float:
    return _trapezoid(curve, np.linspace(0.0, 1.0, len(curve)))


def deletion_insertion(
    model: Any,
    scores: Any,
    *,
    background: Any = None,
    n_random: int = 20,
    seed: int = 0,
) -> xr.Dataset:
    """Concept deletion and insertion curves, in contribution order and in random order.

    For each sample the concepts are ranked by their contribution to the predicted
    class's logit (largest first).  Deletion sets the first ``k`` to their baseline
    (zero contribution) and re-predicts; insertion starts from every concept at its
    baseline and restores the first ``k``.  The curves are the mean probability of the
    originally predicted class, for ``k = 0 .. n_concepts``; the random order is averaged
    over ``n_random`` seeded permutations.

    Parameters
    ----------
    model : fitted single-label concept head
    scores : xr.DataArray (sample, concept) or array
    background : optional
        Reference scores for a head fitted without standardisation.
    n_random, seed : int

    Returns
    -------
    xr.Dataset
        ``probability`` (curve, order, k) with curve ``["deletion", "insertion"]`` and
        order ``["contribution", "random"]``; ``auc`` (curve, order), the area under the
        curve against ``k / n_concepts`` (deletion: lower is more faithful; insertion:
        higher is more faithful).

    Examples
    --------
    >>> import numpy as np
    >>> from conceptlens.heads import SparseLinearHead
    >>> from conceptlens.explain import deletion_insertion
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 6)); y = (X[:, :2].sum(1) + rng.normal(size=300) > 0)
    >>> res = deletion_insertion(SparseLinearHead(C=0.1).fit(X, y.astype(int)), X, n_random=5)
    >>> bool(res.auc.sel(curve="deletion", order="contribution")
    ...      < res.auc.sel(curve="deletion", order="random"))
    True
    """
    params = head_parameters(model, background)
    if params.attrs["kind"] == "multilabel":
        raise ConfigError("deletion/insertion curves are defined for single-label heads.")
    X, _ = concept_matrix(model, scores)
    n, d = X.shape
    c = contributions(model, X, background=background)
    top, _ = _predicted_rows(c)
    mu = params["baseline"].values
    rows = np.arange(n)
    own = c.values[rows, top]  # (n, d) contributions to the predicted class

    def curves(order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dele, ins = np.empty(d + 1), np.empty(d + 1)
        Xd, Xi = X.copy(), np.broadcast_to(mu, X.shape).copy()
        for k in range(d + 1):
            if k:
                cols = order[:, k - 1]
                Xd[rows, cols] = mu[cols]
                Xi[rows, cols] = X[rows, cols]
            dele[k] = np.asarray(model.predict_proba(Xd))[rows, top].mean()
            ins[k] = np.asarray(model.predict_proba(Xi))[rows, top].mean()
        return dele, ins

    d_main, i_main = curves(np.argsort(-own, axis=1, kind="stable"))
    rng = np.random.default_rng(seed)
    rand = [curves(np.argsort(rng.random((n, d)), axis=1)) for _ in range(int(n_random))]
    d_rand = np.mean([r[0] for r in rand], axis=0)
    i_rand = np.mean([r[1] for r in rand], axis=0)
    prob = np.array([[d_main, d_rand], [i_main, i_rand]])
    auc = np.array([[_auc(v) for v in row] for row in prob])
    return xr.Dataset(
        {
            "probability": (("curve", "order", "k"), prob),
            "auc": (("curve", "order"), auc),
        },
        coords={
            "curve": ["deletion", "insertion"],
            "order": ["contribution", "random"],
            "k": np.arange(d + 1),
        },
        attrs={"n_random": int(n_random), "seed": int(seed)},
    )


def random_words_control(
    backbone: Any,
    dataset: Any,
    bank: Any,
    labels: Any,
    train: Any,
    test: Any,
    *,
    n_banks: int = 3,
    mode: str = "relative",
    make_head: Any = None,
    cache: Any = None,
    seed: int = 0,
) -> xr.Dataset:
    """Test accuracy of the real bank next to random-words banks of the same size.

    Parameters
    ----------
    backbone, dataset, bank
        As in :func:`conceptlens.score_concepts`.
    labels : array (n_samples,)
    train, test : integer positions
    n_banks : int
        Random-words banks (seeds ``seed .. seed + n_banks - 1``).
    make_head : callable, optional
        Returns an unfitted head; default ``ConceptBottleneckClassifier(C=1.0)``.
    cache : path, optional
        Embedding cache (the images are encoded once for all banks).

    Returns
    -------
    xr.Dataset
        ``accuracy`` (bank,) with bank ``[bank id, "random-words-0", ...]``.
    """
    from conceptlens.concepts import load_bank, random_words_bank, score_concepts
    from conceptlens.heads import ConceptBottleneckClassifier

    bank = load_bank(bank)
    y = np.asarray(labels)
    n = len(dataset)
    if y.shape != (n,):
        raise DataError(f"labels have shape {y.shape}; pass one label per image ({n},).")
    train, test = (np.arange(n)[np.asarray(t)] for t in (train, test))  # masks or positions
    shared = np.intersect1d(train, test)
    if shared.size:  # the test accuracy of every bank would be inflated alike
        raise DataError(
            f"train and test share {shared.size} image(s) (positions {shared[:5].tolist()}); "
            "evaluate on images the heads were not fitted on."
        )
    factory = make_head or (lambda: ConceptBottleneckClassifier(C=1.0))
    banks = [bank] + [
        random_words_bank(bank, len(bank.names), seed=seed + i) for i in range(n_banks)
    ]
    ids, acc = [], []
    for i, b in enumerate(banks):
        s = score_concepts(backbone, dataset, b, mode=mode, cache=cache)
        head = factory().fit(s.isel(sample=train), y[train])
        acc.append(float(np.mean(np.asarray(head.predict(s.isel(sample=test))) == y[test])))
        ids.append(b.id if i == 0 else f"random-words-{seed + i - 1}")
    return xr.Dataset(
        {"accuracy": ("bank", acc)},
        coords={"bank": ids, "n_concepts": ("bank", [len(b.names) for b in banks])},
    )
