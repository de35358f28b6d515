"""Measure the concept explanations on a SynthDerm preset with synthderm-lit.

Same data and head as ``bench_masking.py`` (and the demo): ``--n`` images of ``--preset``,
the SynthDerm bank scored by synthderm-lit (relative scores), a head fitted on 70 % of
the training sites.  On the in-domain test split it reports:

* additivity of the contributions (largest |sum + base - decision_function|);
* the effective number of concepts per decision (median, 10th and 90th percentiles);
* concept deletion and insertion AUCs, contribution order vs random order;
* test-time intervention curves with SynthDerm's ground-truth concepts (uncertainty and
  contribution order vs random; "present"/"absent" as training percentiles or as the
  mean training score of annotated present/absent images), accuracy at k = 0, 3 and all,
  in-domain and at the held-out site;
* the random-words control: the same head on banks of random words of the same size.

Run::

    nice python benchmarks/bench_explain.py --out explain.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="confounded")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-random", type=int, default=20)
    ap.add_argument("--n-banks", type=int, default=3)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from sklearn.model_selection import train_test_split

    import conceptlens as cl
    from conceptlens.explain import (
        contributions,
        deletion_insertion,
        effective_concepts,
        random_words_control,
    )
    from conceptlens.heads import ConceptBottleneckClassifier
    from conceptlens.masking import intervention_curve

    t0 = time.perf_counter()
    gen = cl.SynthDerm(args.preset)
    dataset = gen.generate(args.n, seed=args.seed).to_dataset()
    backbone = cl.load_backbone("synthderm-lit")
    bank = cl.load_bank("synthderm")
    scores = cl.score_concepts(backbone, dataset, bank, mode="relative", cache=args.cache_dir)
    y = np.asarray(scores["label"].values).astype(str)
    site = np.asarray(scores["site"].values).astype(str)
    indomain = np.flatnonzero(site != gen.config.heldout_site)
    train, test = train_test_split(
        indomain, test_size=0.3, stratify=y[indomain], random_state=args.seed
    )

    def make_head():
        return ConceptBottleneckClassifier(max_concepts_per_class=10, random_state=args.seed)

    S_tr, S_te = scores.isel(sample=train), scores.isel(sample=test)
    cbm = make_head().fit(S_tr, y[train])
    c = contributions(cbm, S_te)
    logit = (c.sum("concept") + c.base_value).transpose("sample", "class").values
    additivity = float(np.abs(logit - cbm.decision_function(S_te)).max())
    eff = effective_concepts(c).values
    di = deletion_insertion(cbm, S_te, n_random=args.n_random, seed=args.seed)
    res = {
        "preset": args.preset,
        "n": args.n,
        "n_test": len(test),
        "accuracy_test": float(np.mean(cbm.predict(S_te) == y[test])),
        "nonzero_concepts": int((cbm.coef_ != 0).any("class").sum()),
        "additivity_max_abs_error": additivity,
        "effective_concepts_median": float(np.median(eff)),
        "effective_concepts_p10": float(np.percentile(eff, 10)),
        "effective_concepts_p90": float(np.percentile(eff, 90)),
        "deletion_auc": {o: float(di.auc.sel(curve="deletion", order=o)) for o in di.order.values},
        "insertion_auc": {
            o: float(di.auc.sel(curve="insertion", order=o)) for o in di.order.values
        },
    }
    held = np.flatnonzero(site == gen.config.heldout_site)
    for split, rows in (("test", test), ("heldout", held)):
        for levels in ("percentile", "annotated"):
            for order in ("uncertainty", "contribution"):
                ic = intervention_curve(
                    cbm, scores.isel(sample=rows), y[rows], reference_scores=S_tr,
                    order=order, levels=levels, n_random=args.n_random, seed=args.seed,
                )  # fmt: skip
                res[f"intervention_{split}_{levels}_{order}"] = {
                    "accuracy_k0": float(ic.accuracy.isel(k=0).sel(order=order)),
                    "accuracy_k3": {
                        o: float(ic.accuracy.sel(k=3, order=o)) for o in ic.order.values
                    },
                    "accuracy_all": float(ic.accuracy.isel(k=-1).sel(order=order)),
                    "auc": {o: float(ic.auc.sel(order=o)) for o in ic.order.values},
                    "n_annotated": int(ic.sizes["k"] - 1),
                }
    ctrl = random_words_control(
        backbone, dataset, bank, y, train, test, n_banks=args.n_banks,
        make_head=make_head, cache=args.cache_dir, seed=args.seed,
    )  # fmt: skip
    res["random_words_control"] = {
        str(b): float(a) for b, a in zip(ctrl.bank.values, ctrl.accuracy.values, strict=True)
    }
    res["seconds"] = time.perf_counter() - t0
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
