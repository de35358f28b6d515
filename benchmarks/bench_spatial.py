"""Measure spatial concept reasoning on SynthDerm with synthderm-lit.

Parts (``--part``, default all):

* ``localization``: pointing game (with and without the 15 px / 224 px tolerance scaled
  to the image size) and IoU of the thresholded map with the ground-truth mask (artifact
  masks for artifacts, the lesion mask for lesion concepts), for patch concept maps
  (cosine and relative), Grad-CAM on the patch tokens and pixel Integrated Gradients of
  the same concept scores.  IoU is reported at threshold 0.5 and at the threshold
  chosen per method and concept on separate calibration images.
* ``atlas``: prototypes per concept M in {1, 3, 5, 10}: held-out-site accuracy of the
  prototype classifier, prototypes that win on >= 1 training image, with and without
  re-seeding dead prototypes.
* ``confounded``: held-out-site accuracy of the prototype classifier before and after
  removing artifact prototypes and after excluding artifact regions with ground-truth
  masks as region feedback, next to the concept-bottleneck head on the same split.
* ``latency``: region feedback per image (importance map, masked max-pooling, head)
  once the image's patches are cached.

Run::

    nice python benchmarks/bench_spatial.py --out benchmarks/results/spatial.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ARTIFACTS = ("ruler", "purple_ink", "dark_corners", "hair", "gel_bubbles")
THRESHOLDS = np.round(np.arange(0.1, 0.95, 0.1), 2)


def _masks(batch, concept):
    if concept in batch.artifact_masks:
        return batch.artifact_masks[concept]
    return batch.lesion_mask


def _method_maps(method, backbone, images, concept, modules, patches):
    """(n, S, S) maps of ``concept`` on ``images`` by ``method``."""
    from conceptlens.explain import PatchGradCAM, PixelIntegratedGradients, images_to_pixels
    from conceptlens.spatial import concept_maps, upsample

    size = images.shape[1]
    if method in ("patch_cosine", "patch_relative"):
        mode = method.split("_")[1]
        maps = concept_maps(backbone, images, "synthderm", mode=mode, patches=patches)
        maps = maps.sel(concept=concept)
        return upsample(maps, size).values
    px = images_to_pixels(backbone, images)
    if method == "gradcam":
        return PatchGradCAM(modules["cosine"]).attribute(px, concept, of="concept").values
    if method == "integrated_gradients":
        ig = PixelIntegratedGradients(modules["cosine"], n_steps=16, internal_batch_size=16)
        return np.abs(ig.attribute(px, concept, of="concept").values).sum(axis=1)
    raise ValueError(method)


def localization(args):
    import conceptlens as cl
    from conceptlens.explain import concept_model_module
    from conceptlens.spatial import mask_iou, pointing_game, scaled_tolerance

    backbone = cl.load_backbone("synthderm-lit")
    bank = cl.load_bank("synthderm")
    gen = cl.SynthDerm(args.preset)
    calib = gen.generate(args.n_loc, seed=args.seed + 101)
    test = gen.generate(args.n_loc, seed=args.seed + 202)
    modules = {"cosine": concept_model_module(backbone, bank, mode="cosine")}
    tol = scaled_tolerance(backbone.image_size)
    patches = {
        "calib": backbone.patch_embeddings(calib.images)[0],
        "test": backbone.patch_embeddings(test.images)[0],
    }
    methods = ["patch_cosine", "patch_relative", "gradcam", "integrated_gradients"]
    out = {"tolerance_px": tol, "n_images": args.n_loc, "concepts": {}}
    for concept in bank.names:
        row = {}
        for method in methods:
            cap = args.n_ig if method == "integrated_gradients" else None
            res = {}
            for name, batch in (("calib", calib), ("test", test)):
                present = np.flatnonzero(batch.concept(concept).astype(bool))
                masks = _masks(batch, concept)[present]
                keep = masks.reshape(len(present), -1).any(axis=1)
                present, masks = present[keep][:cap], masks[keep][:cap]
                if len(present) == 0:
                    break
                t = time.perf_counter()
                maps = _method_maps(
                    method,
                    backbone,
                    batch.images[present],
                    concept,
                    modules,
                    patches[name][present],
                )
                res[name] = (maps, masks, time.perf_counter() - t)
            if "test" not in res:
                continue
            cm, ck, _ = res["calib"]
            best = max(THRESHOLDS, key=lambda th: float(mask_iou(cm, ck, threshold=th).mean()))
            tm, tk, secs = res["test"]
            row[method] = {
                "n": len(tm),
                "pointing": float(pointing_game(tm, tk).mean()),
                "pointing_tol": float(pointing_game(tm, tk, tolerance=tol).mean()),
                "iou_0.5": float(mask_iou(tm, tk, threshold=0.5).mean()),
                "iou_calibrated": float(mask_iou(tm, tk, threshold=best).mean()),
                "threshold": float(best),
                "mask_fraction": float(tk.mean()),
                "seconds_per_image": secs / len(tm),
            }
        out["concepts"][concept] = row
        print(concept, json.dumps({m: round(v["iou_calibrated"], 3) for m, v in row.items()}), flush=True)
    groups = {"artifact": list(ARTIFACTS), "lesion": [c for c in bank.names if c not in ARTIFACTS]}
    summary = {}
    for g, names in groups.items():
        for method in methods:
            rows = [out["concepts"][c][method] for c in names if method in out["concepts"][c]]
            summary[f"{g}/{method}"] = {
                k: float(np.mean([r[k] for r in rows]))
                for k in ("pointing", "pointing_tol", "iou_0.5", "iou_calibrated")
            }
    out["summary"] = summary
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="all")
    ap.add_argument("--preset", default="confounded")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-loc", type=int, default=120, help="images per localisation split")
    ap.add_argument("--n-ig", type=int, default=12, help="images per concept for IG")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    parts = ["localization"] if args.part == "all" else args.part.split(",")
    results = {}
    for part in parts:
        t0 = time.perf_counter()
        results[part] = globals()[part](args)
        results[part]["seconds"] = time.perf_counter() - t0
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
