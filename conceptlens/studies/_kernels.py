"""Numba kernels of the studies: weighted bootstrap metrics for many groups in one pass.

A bootstrap replicate is a vector of integer weights (how often each case was drawn);
every metric is computed from the weights, so one pass over the cases serves the whole
population and every group at once, and a two-model comparison reuses the same weights.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["index_counts", "weighted_metrics"]

# columns of the `main` output
ACC, BAL, AUC, ECE = 0, 1, 2, 3
# columns of the `per_class` output
SENS, SPEC, CAUC = 0, 1, 2


@numba.njit(cache=True, nogil=True)
def index_counts(idx, n):
    """(n_boot, m) row indices -> (n_boot + 1, n) float64 weights; row 0 is all ones."""
    n_boot, m = idx.shape
    out = np.zeros((n_boot + 1, n))
    for i in range(n):
        out[0, i] = 1.0
    for b in range(n_boot):
        for t in range(m):
            out[b + 1, idx[b, t]] += 1.0
    return out


@numba.njit(cache=True, nogil=True)
def weighted_metrics(W, codes, pred, conf, proba, order, slots, n_slots, n_bins):
    """Metrics of every replicate (row of ``W``) in every slot.

    ``W`` (R, n) case weights; ``codes``/``pred`` (n,) true and predicted class codes;
    ``conf`` (n,) confidence of the prediction (largest probability); ``proba`` (n, k);
    ``order`` (k, n) ``argsort`` of each probability column; ``slots`` (n, S) the slot
    of each case in each of ``S`` groupings (slot 0 is the whole population and is not
    listed).  Returns ``main`` (R, n_slots, 4) [accuracy, balanced accuracy, macro
    AUROC, ECE] and ``per_class`` (R, n_slots, k, 3) [sensitivity, specificity, AUROC],
    nan where a slot has no weight or a class (or its complement) is absent.
    """
    R, n = W.shape
    k = proba.shape[1]
    S = slots.shape[1]
    main = np.full((R, n_slots, 4), np.nan)
    per_class = np.full((R, n_slots, k, 3), np.nan)
    tot = np.zeros(n_slots)
    cor = np.zeros(n_slots)
    ptot = np.zeros((n_slots, k))
    pcor = np.zeros((n_slots, k))
    ppred = np.zeros((n_slots, k))
    bw = np.zeros((n_slots, n_bins))
    bacc = np.zeros((n_slots, n_bins))
    bconf = np.zeros((n_slots, n_bins))
    below = np.zeros(n_slots)
    ustat = np.zeros(n_slots)
    bpos = np.zeros(n_slots)
    bneg = np.zeros(n_slots)
    mem = np.empty(S + 1, dtype=np.int64)
    for r in range(R):
        tot[:] = 0.0
        cor[:] = 0.0
        ptot[:, :] = 0.0
        pcor[:, :] = 0.0
        ppred[:, :] = 0.0
        bw[:, :] = 0.0
        bacc[:, :] = 0.0
        bconf[:, :] = 0.0
        for i in range(n):
            w = W[r, i]
            if w == 0.0:
                continue
            y = codes[i]
            p = pred[i]
            hit = 1.0 if p == y else 0.0
            b = int(conf[i] * n_bins)
            if b >= n_bins:
                b = n_bins - 1
            if b < 0:
                b = 0
            mem[0] = 0
            for s in range(S):
                mem[s + 1] = slots[i, s]
            for j in range(S + 1):
                s = mem[j]
                tot[s] += w
                cor[s] += w * hit
                ptot[s, y] += w
                pcor[s, y] += w * hit
                ppred[s, p] += w
                bw[s, b] += w
                bacc[s, b] += w * hit
                bconf[s, b] += w * conf[i]
        for s in range(n_slots):
            if tot[s] == 0.0:
                continue
            main[r, s, ACC] = cor[s] / tot[s]
            bal = 0.0
            npres = 0
            for a in range(k):
                if ptot[s, a] > 0.0:
                    per_class[r, s, a, SENS] = pcor[s, a] / ptot[s, a]
                    bal += pcor[s, a] / ptot[s, a]
                    npres += 1
                neg = tot[s] - ptot[s, a]
                if neg > 0.0:
                    fp = ppred[s, a] - pcor[s, a]
                    per_class[r, s, a, SPEC] = (neg - fp) / neg
            if npres > 1:
                main[r, s, BAL] = bal / npres
            e = 0.0
            for q in range(n_bins):
                if bw[s, q] > 0.0:
                    e += abs(bacc[s, q] - bconf[s, q])
            main[r, s, ECE] = e / tot[s]
        # AUROC per class: one walk over the cases sorted by score, ties by blocks
        for a in range(k):
            below[:] = 0.0
            ustat[:] = 0.0
            t = 0
            while t < n:
                u = t
                while u + 1 < n and proba[order[a, u + 1], a] == proba[order[a, t], a]:
                    u += 1
                for v in range(t, u + 1):
                    i = order[a, v]
                    w = W[r, i]
                    if w == 0.0:
                        continue
                    pos = codes[i] == a
                    mem[0] = 0
                    for s in range(S):
                        mem[s + 1] = slots[i, s]
                    for j in range(S + 1):
                        if pos:
                            bpos[mem[j]] += w
                        else:
                            bneg[mem[j]] += w
                for v in range(t, u + 1):
                    i = order[a, v]
                    if W[r, i] == 0.0:
                        continue
                    mem[0] = 0
                    for s in range(S):
                        mem[s + 1] = slots[i, s]
                    for j in range(S + 1):
                        s = mem[j]
                        if bpos[s] != 0.0 or bneg[s] != 0.0:
                            ustat[s] += bpos[s] * (below[s] + 0.5 * bneg[s])
                            below[s] += bneg[s]
                            bpos[s] = 0.0
                            bneg[s] = 0.0
                t = u + 1
            for s in range(n_slots):
                npos = ptot[s, a]
                nneg = tot[s] - npos
                if npos > 0.0 and nneg > 0.0:
                    per_class[r, s, a, CAUC] = ustat[s] / (npos * nneg)
        for s in range(n_slots):
            if k == 2:
                main[r, s, AUC] = per_class[r, s, 1, CAUC]
            else:
                acc = 0.0
                cnt = 0
                for a in range(k):
                    if not np.isnan(per_class[r, s, a, CAUC]):
                        acc += per_class[r, s, a, CAUC]
                        cnt += 1
                if cnt > 1:
                    main[r, s, AUC] = acc / cnt
    return main, per_class
