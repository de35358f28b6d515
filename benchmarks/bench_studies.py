"""The SynthDerm numbers of docs/audits.md: audit, shortcut finder and masking grid.

1. Audit: SynthDerm ``confounded`` (``--n`` images, seed 0) scored by synthderm-lit with
   the SynthDerm bank (relative scores, embedding cache), split as the demo does (70 % of
   the training sites to fit, the rest of them in-domain test, the held-out site apart);
   the demo's concept head (at most 10 concepts per class) and a linear probe on the
   embeddings; ``audit`` over in-domain test / held-out site with skin-tone groups
   (1,000 replicates); ``concept_audit`` and ``find_shortcuts`` over the three sites.
2. Masking grid: ``masking_study`` on ``--n-masking`` images of ``confounded`` (ROI
   dilations 0 and ``--dilation``) and of ``iid`` (the same), black fill, synthderm-lit,
   metadata-only baseline on site and skin tone, a stratified 70/30 split.

Run::

    nice python benchmarks/bench_studies.py --out benchmarks/results/studies
"""

# ruff: noqa: E501 (result tables built inline)
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _audit_part(n, seed, cache, out):
    from sklearn.model_selection import train_test_split

    import conceptlens as cl
    from conceptlens.studies import audit, concept_audit, find_shortcuts, save_audit

    batch = cl.SynthDerm("confounded").generate(n, seed=seed)
    ds = batch.to_dataset()
    bb = cl.load_backbone("synthderm-lit")
    scores = cl.score_concepts(bb, ds, "synthderm", mode="relative", cache=cache)
    emb = cl.embed_images(bb, ds, cache=cache)
    y = scores.label.values
    site = scores.site.values
    indomain = np.flatnonzero(site != "site_c")
    train, test = train_test_split(
        indomain, test_size=0.3, stratify=y[indomain], random_state=seed
    )
    held = np.flatnonzero(site == "site_c")
    cbm = cl.ConceptBottleneckClassifier(max_concepts_per_class=10, random_state=seed).fit(
        scores.isel(sample=train), y[train]
    )
    probe = cl.LinearProbe(C=0.1).fit(emb[train], y[train])
    rows = np.concatenate([test, held])
    split = {"in_domain": np.arange(len(test)), "heldout_site_c": len(test) + np.arange(len(held))}
    res = audit(
        {"concept_head": cbm, "linear_probe": probe}, scores.isel(sample=rows),
        inputs={"linear_probe": emb[rows]}, split=split, groups=["skin_tone"], seed=seed,
    )  # fmt: skip
    save_audit(res, out / "audit_confounded.nc")
    ca = concept_audit(scores)
    shortcuts = find_shortcuts(cbm, scores)
    shortcuts.to_csv(out / "shortcuts_confounded.csv", index=False)
    summary = {
        "metrics": {
            f"{m}|{s}|{g}|{k}": [round(float(v), 3) for v in res.metrics.sel(model=m, split=s, group=g, metric=k).values]
            for m in res.model.values for s in res.split.values
            for g in ("all", "worst:skin_tone") for k in res.metric.values
        },
        "gap_auroc": {
            m: [round(float(v), 3) for v in res.gap.sel(model=m, split="heldout_site_c", group="all", metric="auroc").values]
            for m in res.model.values
        },
        "paired_auroc": {
            s: [round(float(v), 3) for v in res.paired.isel(pair=0).sel(split=s, group="all", metric="auroc").values]
            + [round(float(res.paired_p_value.isel(pair=0).sel(split=s, group="all", metric="auroc")), 4)]
            for s in res.split.values
        },
        "delong_melanoma": {
            s: {k: round(float(v), 4) for k, v in zip(res.delong_stat.values, res.delong.isel(pair=0).sel(split=s, group="all", **{"class": "melanoma"}).values, strict=True)}
            for s in res.split.values
        },
        "detection_auroc_all": {c: round(float(v), 3) for c, v in zip(ca.concept.values, ca.detection_auroc.sel(site="all").values, strict=True)},
        "shortcuts_top": shortcuts.head(8)[["concept", "class", "suspicion", "suspect", "reliance", "association_shift", "prevalence_shift"]].round(4).to_dict("records"),
        "association_melanoma": {
            c: [round(float(v), 3) for v in ca.label_association.sel(concept=c, **{"class": "melanoma"}).values]
            for c in ("purple_ink", "ruler", "blue_white_veil")
        },
    }  # fmt: skip
    return summary


def _masking_part(preset, n, dilations, seed, cache, out):
    import conceptlens as cl
    from conceptlens.studies import masking_study

    ds = cl.SynthDerm(preset).generate(n, seed=seed).to_dataset()
    res = masking_study(
        ds, roi="lesion_mask", dilations=dilations, metadata_columns=["site", "skin_tone"],
        cache=cache, seed=seed,
    )  # fmt: skip
    res.to_netcdf(out / f"masking_grid_{preset}.nc")
    summary = {}
    for m in res.model.values:
        for d in res.dilation.values:
            for k in ("melanoma",):
                grid = res.auroc.sel(model=m, dilation=d, **{"class": k})
                summary[f"{m}|{int(d)}|{k}"] = {
                    f"{tc}->{ec}": [round(float(v), 3) for v in grid.sel(train_condition=tc, eval_condition=ec).values]
                    for tc in res.train_condition.values for ec in res.eval_condition.values
                }  # fmt: skip
            grid = res.macro_auroc.sel(model=m, dilation=d)
            summary[f"{m}|{int(d)}|macro"] = {
                f"{tc}->{ec}": [round(float(v), 3) for v in grid.sel(train_condition=tc, eval_condition=ec).values]
                for tc in res.train_condition.values for ec in res.eval_condition.values
            }  # fmt: skip
    summary["metadata_macro_auroc"] = [round(float(v), 3) for v in res.metadata_macro_auroc.values]
    summary["metadata_auroc_melanoma"] = [
        round(float(v), 3) for v in res.metadata_auroc.sel(**{"class": "melanoma"}).values
    ]
    summary["roi_fraction"] = res.roi_fraction.round(3).values.tolist()
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--n-masking", type=int, default=500)
    ap.add_argument("--dilation", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--skip-audit", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/studies")
    args = ap.parse_args(argv)
    from conceptlens._io import cache_root

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or cache_root()
    result = {"n": args.n, "n_masking": args.n_masking, "seed": args.seed}
    if args.skip_audit and (out / "studies.json").exists():  # keep the earlier audit part
        result = {**json.loads((out / "studies.json").read_text()), **result}
    t0 = time.perf_counter()
    if not args.skip_audit:
        result["audit"] = _audit_part(args.n, args.seed, cache, out)
        print("audit done", time.perf_counter() - t0, flush=True)
        (out / "studies.json").write_text(json.dumps(result, indent=1) + "\n")
    for preset, dil in (("confounded", [0, args.dilation]), ("iid", [0, args.dilation])):
        result[f"masking_{preset}"] = _masking_part(
            preset, args.n_masking, dil, args.seed, cache, out
        )
        print(preset, "done", time.perf_counter() - t0, flush=True)
        (out / "studies.json").write_text(json.dumps(result, indent=1) + "\n")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "studies.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
