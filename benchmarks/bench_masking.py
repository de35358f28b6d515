"""Measure test-time concept masking on a SynthDerm preset with synthderm-lit.

Protocol (docs/masking.md reports its numbers):

1. Generate ``--n`` SynthDerm images of ``--preset`` (seed ``--seed``), score the SynthDerm
   bank with synthderm-lit (relative scores, embedding cache), split as the demo does:
   70 % of the training sites to fit, 30 % in-domain test, the held-out site apart.
2. Fit the concept head at the training sites (``ConceptBottleneckClassifier`` along its
   path, at most 10 concepts per class, as the demo).
3. For each of ``--repeats`` seeds draw ``--shots`` labelled held-out images per class,
   fit :class:`conceptlens.masking.TestTimeMasking` on them (with the training scores as
   source statistics) and measure accuracy on the rest of the held-out site, and back at
   the training sites (in-domain test split); once per rule in ``--rules`` (``greedy``:
   the default rule; ``recentre``: :func:`conceptlens.masking.recentre_rule`;
   ``recentre+greedy``: re-centring, then the greedy rule; the names
   ``TestTimeMasking(rule=...)`` takes). The first rule's numbers are
   the ``ttm_*`` keys; every rule's are under ``rules``.
4. Next to it: the source head unchanged; two oracles that use every held-out label: the
   whole ``artifact`` group masked with its training mean (the planted-shortcut oracle)
   and every concept of the head re-centred on its class-balanced source mean (the
   protocol-shift oracle); the upper bound (a head refitted on target data, 5-fold
   cross-fitted accuracy on the held-out site).

Run::

    nice python benchmarks/bench_masking.py --preset confounded --out masking.json
    nice python benchmarks/bench_masking.py --preset protocol-shift \
        --rules greedy,recentre,recentre+greedy --out masking_protocol-shift.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np


def _acc(pred, y):
    return float(np.mean(np.asarray(pred).astype(str) == np.asarray(y).astype(str)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="confounded")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument(
        "--max-source-drop",
        type=float,
        default=None,
        help="Source-accuracy guard of the adapter (default: none).",
    )
    ap.add_argument(
        "--rules",
        default="greedy",
        help="Comma-separated rules to measure: greedy, recentre, recentre+greedy.",
    )
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=None, help="Write the results as JSON here.")
    args = ap.parse_args(argv)

    import conceptlens as cl
    from conceptlens.heads import ConceptBottleneckClassifier
    from conceptlens.masking import TestTimeMasking, recentre_rule
    from conceptlens.masking._ttm import RULE_NAMES

    chosen = [r.strip() for r in args.rules.split(",") if r.strip()]
    unknown = sorted(set(chosen) - set(RULE_NAMES))
    if unknown or not chosen:
        raise SystemExit(f"unknown rule(s) {unknown}; choose from {list(RULE_NAMES)}")

    t0 = time.perf_counter()
    gen = cl.SynthDerm(args.preset)
    heldout = gen.config.heldout_site
    if heldout is None:
        raise SystemExit(f"preset {args.preset!r} has no held-out site")
    dataset = gen.generate(args.n, seed=args.seed).to_dataset()
    backbone = cl.load_backbone("synthderm-lit")
    bank = cl.load_bank("synthderm")
    scores = cl.score_concepts(backbone, dataset, bank, mode="relative", cache=args.cache_dir)
    y = np.asarray(scores["label"].values).astype(str)
    site = np.asarray(scores["site"].values).astype(str)
    from sklearn.model_selection import StratifiedKFold, train_test_split

    indomain = np.flatnonzero(site != heldout)
    train, test = train_test_split(
        indomain, test_size=0.3, stratify=y[indomain], random_state=args.seed
    )
    held = np.flatnonzero(site == heldout)
    S_tr, S_te, S_ho = (scores.isel(sample=i) for i in (train, test, held))
    y_tr, y_te, y_ho = y[train], y[test], y[held]
    cbm = ConceptBottleneckClassifier(max_concepts_per_class=10, random_state=args.seed)
    cbm.fit(S_tr, y_tr)
    print(f"scored and fitted in {time.perf_counter() - t0:.1f} s", flush=True)

    oracle = TestTimeMasking(cbm, mask_groups=["artifact"], rule=None).fit(S_ho, y_ho)
    recentre_oracle = TestTimeMasking(
        cbm,
        rule=partial(recentre_rule, recentre_threshold=0.0),
        source_scores=S_tr,
        source_labels=y_tr,
    ).fit(S_ho, y_ho)
    res = {
        "preset": args.preset,
        "n": args.n,
        "seed": args.seed,
        "shots_per_class": args.shots,
        "repeats": args.repeats,
        "max_source_drop": args.max_source_drop,
        "heldout_site": heldout,
        "n_heldout": len(held),
        "n_indomain_test": len(test),
        "source_heldout": _acc(cbm.predict(S_ho), y_ho),
        "source_indomain": _acc(cbm.predict(S_te), y_te),
        "oracle_heldout": _acc(oracle.predict(S_ho), y_ho),
        "oracle_indomain": _acc(oracle.predict(S_te), y_te),
        "oracle_recentre_heldout": _acc(recentre_oracle.predict(S_ho), y_ho),
        "oracle_recentre_indomain": _acc(recentre_oracle.predict(S_te), y_te),
    }
    # upper bound: a head refitted on target data (5-fold cross-fitted accuracy)
    pred = np.empty(len(held), dtype=object)
    folds = StratifiedKFold(5, shuffle=True, random_state=args.seed)
    for fit_idx, eval_idx in folds.split(np.zeros(len(held)), y_ho):
        h = ConceptBottleneckClassifier(max_concepts_per_class=10, random_state=args.seed)
        h.fit(S_ho.isel(sample=fit_idx), y_ho[fit_idx])
        pred[eval_idx] = h.predict(S_ho.isel(sample=eval_idx))
    res["refit_target_heldout"] = _acc(pred, y_ho)

    classes = np.unique(y_ho)
    res["rules"] = {}
    for name in chosen:
        before, after, indom, acted = [], [], [], {}
        for r in range(args.repeats):
            rng = np.random.default_rng(1000 + r)
            shots = np.concatenate(
                [rng.choice(np.flatnonzero(y_ho == c), args.shots, replace=False) for c in classes]
            )
            rest = np.setdiff1d(np.arange(len(held)), shots)
            ttm = TestTimeMasking(
                cbm,
                rule=name,
                source_scores=S_tr,
                source_labels=y_tr,
                max_source_drop=args.max_source_drop,
            )
            ttm.fit(S_ho.isel(sample=shots), y_ho[shots])
            before.append(_acc(cbm.predict(S_ho.isel(sample=rest)), y_ho[rest]))
            after.append(_acc(ttm.predict(S_ho.isel(sample=rest)), y_ho[rest]))
            indom.append(_acc(ttm.predict(S_te), y_te))
            for a in ttm.actions_:
                acted.setdefault(a.action, Counter())[a.concept] += 1
        out = dict(
            ttm_before_mean=float(np.mean(before)),
            ttm_before_sd=float(np.std(before)),
            ttm_heldout_mean=float(np.mean(after)),
            ttm_heldout_sd=float(np.std(after)),
            ttm_heldout_min=float(np.min(after)),
            ttm_heldout_max=float(np.max(after)),
            ttm_gain_mean=float(np.mean(np.subtract(after, before))),
            ttm_indomain_mean=float(np.mean(indom)),
            ttm_indomain_sd=float(np.std(indom)),
            masked_counts=dict(acted.get("mask", Counter()).most_common()),
            amplified_counts=dict(acted.get("amplify", Counter()).most_common()),
            recentred_counts=dict(acted.get("recentre", Counter()).most_common()),
        )
        res["rules"][name] = out
        if name == chosen[0]:
            res.update({k: v for k, v in out.items() if k != "recentred_counts"})
        print(name, json.dumps(out), flush=True)
    res["seconds"] = time.perf_counter() - t0
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
