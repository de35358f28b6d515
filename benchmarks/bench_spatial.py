"""Measure spatial concept reasoning on SynthDerm with synthderm-lit.

Parts (``--part``, default all):

* ``localization``: pointing game (with and without the 15 px / 224 px tolerance scaled
  to the image size) and IoU of the thresholded map with the ground-truth mask, for patch
  concept maps (cosine and relative; output tokens, MaskCLIP value tokens ``_value`` and
  ClearCLIP q-q tokens ``_self``), prototype-atlas maps, Grad-CAM on the patch tokens and
  pixel Integrated Gradients of the same concept scores (``--methods`` picks a subset).
  Targets: the artifact's mask for artifacts, the structure's own mask for lesion
  structures and colour regions (and, for comparison, the whole lesion), the lesion mask
  for the morphology concepts. IoU is reported at threshold 0.5 and at the threshold
  chosen per method, concept and target on separate calibration images, in pixels and
  -- labelled ``patch`` -- on the patch grid (maps and masks averaged over each patch, the
  mask kept where it covers >= 50 % of the patch). ``oracle`` is the resolution ceiling:
  the best pixel IoU reached by thresholding (per image) the bilinearly upsampled
  per-patch coverage of the mask itself, i.e. the best a perfect patch-level map gets.
* ``localization_guided`` (on request): the same images, split and calibration, bilinear
  vs guided-filter upsampling (``upsample(method="guided")``, 24 variants of guide,
  radius and eps) of the best map methods (``--guided-methods``); the variant chosen
  once on the calibration images and per method and concept; the ceiling filtered the
  same way; ``--variants jbu``: joint bilateral upsampling instead (9 variants).
  ``guided_errors`` (on request) gives standard errors for key pairs.
* ``localization_shift`` (on request): the same images, split and calibration, on finer
  token grids from shifted inference (``patch_embeddings(shifts=s)``, ``--shifts``, e.g.
  ``1,2,4``: 12 x 12, 24 x 24, 48 x 48 for synthderm-lit) for ``--shift-methods``;
  bilinear and guided (colour guide, eps 1e-4, radius 8/16/32 px, one radius chosen
  per grid on the calibration images) IoU, pointing game, and the resolution ceiling
  of each grid; seconds per image to embed.
* ``localization_zoom`` (on request): the same images, split and calibration, with
  zoomed inference (``patch_embeddings(zoom=z)``, ``--zooms``, e.g. ``1,2,4,2o2``: the
  image upscaled z times and run as tiles, tokens seeing 8 / z px; ``2o2``: z = 2 with
  tiles overlapping by 2 tokens) for ``--zoom-methods`` (``mask_prototypes``: k-means of
  the calibration tokens on the concept's mask, no text); bilinear and guided IoU,
  pointing game, the cell ceiling of each grid, and the agreement of image-level
  concept scores from the zoomed tokens with the plain ones.
* ``localization_seg`` (on request): the mask-supervised ``ConceptSegmenter`` trained on
  a separate SynthDerm sample (``--seg-train`` images, seed + 303), same calibration and
  test images, targets and threshold calibration (on the shared grid and on a wider one,
  ``SEG_THRESHOLDS``, for the prior-shifted and the class-balanced probabilities);
  ablations of the features (pixel filter bank and its options, token PCA, both), the
  classifier (logistic, MLP, its size and iterations), the training pixels and the
  number of training images (``--seg-configs``, options ``SEG_OPTIONS``; the
  configuration to use is chosen by the mean IoU on the calibration images); the
  same-run zero-shot ``rel`` map, the token grid's ceiling and the best stored zero-shot
  IoU per concept (plain, guided, shifted and zoomed maps); fit and predict seconds.
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
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

ARTIFACTS = ("ruler", "purple_ink", "dark_corners", "hair", "gel_bubbles")
THRESHOLDS = np.round(np.arange(0.1, 0.95, 0.1), 2)


def _targets(batch, concept):
    """[(target, masks (n, S, S))], the first one primary: the artifact's mask; the
    structure's own mask, then the whole lesion for comparison; the lesion mask for
    morphology concepts."""
    if concept in batch.artifact_masks:
        return [("artifact", batch.artifact_masks[concept])]
    if concept in batch.structure_masks:
        return [("structure", batch.structure_masks[concept]), ("lesion", batch.lesion_mask)]
    return [("lesion", batch.lesion_mask)]


def _tokens_of(method):
    """Token path of a patch-map or atlas method: ``patch_relative_value`` -> ``value``."""
    tail = method.rsplit("_", 1)[-1]
    return tail if tail in ("value", "self") else "output"


def _pool(a, grid):
    """(n, S, S) -> (n, g, g) means over each patch."""
    from conceptlens.spatial import pool_to_grid

    return pool_to_grid(a, (grid, grid))


def _oracle_iou(masks, grid):
    """Per image: the resolution ceiling (``conceptlens.spatial.resolution_ceiling``)."""
    from conceptlens.spatial import resolution_ceiling

    return resolution_ceiling(masks, grid).values


def _method_maps(method, backbone, images, idx, concept, modules, patches, grid=False):
    """(len(idx), S, S) maps of ``concept`` on ``images[idx]`` by ``method``; ``images``
    and ``patches`` are a whole image set (patch maps are computed once per set).
    ``grid=True``: the maps on the patch grid instead (pixel methods: per-patch means)."""
    from conceptlens.explain import PatchGradCAM, PixelIntegratedGradients, images_to_pixels
    from conceptlens.spatial import concept_maps, upsample

    size = images.shape[1]
    if method.startswith("prototype_atlas"):
        # ``prototype_atlas_plain`` (localization_shift): the atlas of the plain grid
        key = "atlas_plain" if method.endswith("_plain") else f"atlas_{_tokens_of(method)}"
        atlas = modules[key]
        m = atlas.concept_maps(patches[idx]).sel(concept=concept)
        return m.values if grid else upsample(m, size).values
    if method.startswith("patch_"):
        mode = method.split("_")[1]
        # one concept_maps call per method and image set (the text side is encoded once)
        key = (method, id(patches))
        if key not in modules:
            modules[key] = (
                patches,
                concept_maps(backbone, images, "synthderm", mode=mode, patches=patches),
            )
        maps = modules[key][1]
        maps = maps.sel(concept=concept).isel(sample=idx)
        return maps.values if grid else upsample(maps, size).values
    px = images_to_pixels(backbone, images[idx])
    if method == "gradcam":
        m = PatchGradCAM(modules["cosine"]).attribute(px, concept, of="concept").values
        return _pool(m, patches.shape[1]) if grid else m
    if method == "integrated_gradients":
        ig = PixelIntegratedGradients(modules["cosine"], n_steps=16, internal_batch_size=16)
        return np.abs(ig.attribute(px, concept, of="concept").values).sum(axis=1)
    raise ValueError(method)


def _localization_setup(args, methods):
    """What both localisation parts share: backbone, bank, calibration and test images
    (fixed seeds), the cosine concept module, patch tokens per token kind, and an atlas
    per ``prototype_atlas*`` method built from the calibration images only."""
    import conceptlens as cl
    from conceptlens.explain import concept_model_module
    from conceptlens.spatial import build_atlas, scaled_tolerance

    backbone = cl.load_backbone("synthderm-lit")
    bank = cl.load_bank("synthderm")
    gen = cl.SynthDerm(args.preset)
    calib = gen.generate(args.n_loc, seed=args.seed + 101)
    test = gen.generate(args.n_loc, seed=args.seed + 202)
    modules = {"cosine": concept_model_module(backbone, bank, mode="cosine")}
    tol = scaled_tolerance(backbone.image_size)
    paths = sorted({_tokens_of(m) for m in methods})
    patches = {
        tok: {
            "calib": backbone.patch_embeddings(calib.images, tokens=tok)[0],
            "test": backbone.patch_embeddings(test.images, tokens=tok)[0],
        }
        for tok in paths
    }
    grid = patches[paths[0]]["test"].shape[1]
    for method in methods:
        if method.startswith("prototype_atlas"):
            # atlas from the calibration images (never from the test images)
            tok = _tokens_of(method)
            modules[f"atlas_{tok}"] = build_atlas(
                backbone,
                patches[tok]["calib"],
                bank,
                n_prototypes=args.m,
                concept_labels=calib.concepts,
            )
    return backbone, bank, calib, test, modules, tol, patches, grid


def localization(args):
    from conceptlens.spatial import mask_iou, patch_masks, pointing_game

    methods = args.methods.split(",")
    backbone, bank, calib, test, modules, tol, patches, grid = _localization_setup(args, methods)
    out = {"tolerance_px": tol, "n_images": args.n_loc, "grid": grid, "concepts": {}}
    for concept in bank.names:
        row: dict = {}
        sel = {}
        for name, batch in (("calib", calib), ("test", test)):
            present = np.flatnonzero(batch.concept(concept).astype(bool))
            primary = _targets(batch, concept)[0][1][present]
            sel[name] = present[primary.reshape(len(present), -1).any(axis=1)]
        if len(sel["test"]) == 0 or len(sel["calib"]) == 0:
            continue
        oracle = {}
        for target, masks in _targets(test, concept):
            o = _oracle_iou(masks[sel["test"]], grid)
            oracle[target] = {"pixel": float(o.mean()), "n": len(o)}
        row["oracle"] = oracle
        for method in methods:
            cap = args.n_ig if method == "integrated_gradients" else None
            maps, secs = {}, 0.0
            for name, batch in (("calib", calib), ("test", test)):
                idx = sel[name][:cap]
                t = time.perf_counter()
                maps[name] = _method_maps(
                    method,
                    backbone,
                    batch.images,
                    idx,
                    concept,
                    modules,
                    patches[_tokens_of(method)][name],
                )
                secs = time.perf_counter() - t
            per_target = {}
            for (target, cmasks), (_, tmasks) in zip(
                _targets(calib, concept), _targets(test, concept), strict=True
            ):
                ck, tk = cmasks[sel["calib"][:cap]], tmasks[sel["test"][:cap]]
                cm, tm = maps["calib"], maps["test"]
                best = max(THRESHOLDS, key=lambda th: float(mask_iou(cm, ck, threshold=th).mean()))
                res = {
                    "n": len(tm),
                    "pointing": float(pointing_game(tm, tk).mean()),
                    "pointing_tol": float(pointing_game(tm, tk, tolerance=tol).mean()),
                    "iou_0.5": float(mask_iou(tm, tk, threshold=0.5).mean()),
                    "iou_calibrated": float(mask_iou(tm, tk, threshold=best).mean()),
                    "threshold": float(best),
                    "mask_fraction": float(tk.mean()),
                    "oracle_same_images": float(_oracle_iou(tk, grid).mean()),
                }
                # patch grid: maps and masks averaged per patch, mask = coverage >= 50 %
                ckp, tkp = patch_masks(ck, grid), patch_masks(tk, grid)
                cmp_, tmp_ = _pool(cm, grid), _pool(tm, grid)
                ck_ok = ckp.reshape(len(ckp), -1).any(axis=1)
                tk_ok = tkp.reshape(len(tkp), -1).any(axis=1)
                res["patch_n"] = int(tk_ok.sum())
                if ck_ok.any() and tk_ok.any():
                    bp = max(
                        THRESHOLDS,
                        key=lambda th: float(
                            mask_iou(cmp_[ck_ok], ckp[ck_ok], threshold=th).mean()
                        ),
                    )
                    res["patch_iou_calibrated"] = float(
                        mask_iou(tmp_[tk_ok], tkp[tk_ok], threshold=bp).mean()
                    )
                    res["patch_threshold"] = float(bp)
                per_target[target] = res
            per_target["seconds_per_image"] = secs / len(maps["test"])
            row[method] = per_target
        out["concepts"][concept] = row
        first = _targets(test, concept)[0][0]
        brief = {m: round(v[first]["iou_calibrated"], 3) for m, v in row.items() if m != "oracle"}
        brief["oracle"] = round(oracle[first]["pixel"], 3)
        print(concept, first, json.dumps(brief), flush=True)
    groups = {
        "artifact": [c for c in bank.names if c in ARTIFACTS],
        "structure": [c for c in bank.names if c in test.structure_masks],
        "morphology": [
            c for c in bank.names if c not in ARTIFACTS and c not in test.structure_masks
        ],
    }
    summary = {}
    keys = ("pointing", "pointing_tol", "iou_0.5", "iou_calibrated", "oracle_same_images")
    for g, names in groups.items():
        target = {"artifact": "artifact", "structure": "structure"}.get(g, "lesion")
        names = [c for c in names if c in out["concepts"]]
        summary[f"{g}/oracle"] = float(
            np.mean([out["concepts"][c]["oracle"][target]["pixel"] for c in names])
        )
        for method in methods:
            rows = [out["concepts"][c][method][target] for c in names]
            summary[f"{g}/{method}"] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
            patch = [r["patch_iou_calibrated"] for r in rows if "patch_iou_calibrated" in r]
            summary[f"{g}/{method}"]["patch_iou_calibrated"] = (
                float(np.mean(patch)) if patch else None
            )
            summary[f"{g}/{method}"]["patch_concepts"] = len(patch)
    out["summary"] = summary
    return out


GUIDED_METHODS = "patch_relative,patch_relative_value,prototype_atlas,gradcam"
# guided-filter variants: guide (colour or grey), radius (px), eps (guide in [0, 1])
GUIDED_VARIANTS = [
    (guide, r, eps)
    for guide in ("colour", "grey")
    for r in (4, 8, 16, 32)
    for eps in (1e-4, 1e-3, 1e-2)
]
# joint bilateral upsampling: ("jbu", sigma_spatial in cells, sigma_range in [0, 1] units)
JBU_VARIANTS = [("jbu", ss, sr) for ss in (0.5, 1.0, 2.0) for sr in (0.05, 0.1, 0.2)]


def _variant_name(v):
    if v[0] == "jbu":
        return f"jbu_s{v[1]:g}_r{v[2]:g}"
    return f"{v[0]}_r{v[1]}_eps{v[2]:g}"


SHIFT_METHODS = "patch_relative,patch_relative_value,prototype_atlas,prototype_atlas_plain"
SHIFT_RADII = (8, 16, 32)


def _guided_ceiling(ideal, tk):
    """Per image, the best IoU of the min-max normalised ``ideal`` map over thresholds."""
    best = np.zeros(len(tk))
    lo = ideal.min(axis=(1, 2), keepdims=True)
    span = np.maximum(ideal.max(axis=(1, 2), keepdims=True) - lo, 1e-12)
    norm = (ideal - lo) / span
    for t in np.arange(1, 100) / 100.0:
        pred = norm >= t
        inter = (pred & tk).sum(axis=(1, 2))
        union = (pred | tk).sum(axis=(1, 2))
        best = np.maximum(best, inter / np.maximum(union, 1))
    return best


def localization_shift(args):
    """Finer token grids by shifted inference: IoU and pointing game at each ``s``.

    Same calibration and test images, targets (primary only) and threshold calibration
    as ``localization``; per ``s`` the patch tokens are ``patch_embeddings(shifts=s)``
    and the atlas is built from the calibration images' tokens at that ``s``
    (``prototype_atlas``) or once from their plain tokens (``prototype_atlas_plain``,
    the same prototypes at every ``s``). Maps are
    upsampled bilinearly and guided-filtered (colour guide, eps 1e-4, radius in
    ``SHIFT_RADII``; one radius per ``s`` chosen by mean calibration IoU over methods
    and concepts). Ceilings: ``resolution_ceiling(masks, 12 s)`` (cells of 8 / s px),
    ``resolution_ceiling(masks, 12 s, window=8)`` (8 px windows every 8 / s px, what
    shifted tokens see) and the ideal grid map guided-filtered the same way.
    """
    import xarray as xr

    import conceptlens as cl
    from conceptlens.spatial import (
        build_atlas,
        concept_maps,
        mask_iou,
        pointing_game,
        resolution_ceiling,
        scaled_tolerance,
        upsample,
    )

    methods = args.shift_methods.split(",")
    shifts = [int(v) for v in args.shifts.split(",")]
    backbone = cl.load_backbone("synthderm-lit")
    bank = cl.load_bank("synthderm")
    gen = cl.SynthDerm(args.preset)
    calib = gen.generate(args.n_loc, seed=args.seed + 101)
    test = gen.generate(args.n_loc, seed=args.seed + 202)
    tol = scaled_tolerance(backbone.image_size)
    toks = sorted({_tokens_of(m) for m in methods})
    batches = {"calib": calib, "test": test}
    patches, modules, grids, embed_s = {}, {}, {}, {}
    for sh in shifts:
        t = time.perf_counter()
        patches[sh] = {
            tok: {
                n: backbone.patch_embeddings(b.images, tokens=tok, shifts=sh)[0]
                for n, b in batches.items()
            }
            for tok in toks
        }
        embed_s[sh] = (time.perf_counter() - t) / (2 * len(toks) * args.n_loc)
        grids[sh] = patches[sh][toks[0]]["test"].shape[1]
        modules[sh] = {}
        for m in methods:
            if m.startswith("prototype_atlas") and not m.endswith("_plain"):
                tok = _tokens_of(m)
                modules[sh][f"atlas_{tok}"] = build_atlas(
                    backbone,
                    patches[sh][tok]["calib"],
                    bank,
                    n_prototypes=args.m,
                    concept_labels=calib.concepts,
                )
            elif m.endswith("_plain"):  # the plain grid's atlas applied to finer tokens
                if sh == shifts[0]:
                    modules["plain_atlas"] = build_atlas(
                        backbone,
                        backbone.patch_embeddings(calib.images)[0],
                        bank,
                        n_prototypes=args.m,
                        concept_labels=calib.concepts,
                    )
                # the same prototypes; only the grid the atlas checks patches against
                plain = modules["plain_atlas"]
                modules[sh]["atlas_plain"] = dataclasses.replace(plain, grid=(grids[sh],) * 2)
        print(f"shifts={sh}: grid {grids[sh]}, {embed_s[sh]:.3f} s per image", flush=True)
    radii = [f"r{r}" for r in SHIFT_RADII]
    out = {
        "tolerance_px": tol,
        "n_images": args.n_loc,
        "shifts": shifts,
        "grids": {str(sh): grids[sh] for sh in shifts},
        "embed_seconds_per_image": {str(sh): embed_s[sh] for sh in shifts},
        "methods": methods,
        "guided_radii_px": list(SHIFT_RADII),
        "concepts": {},
    }
    # how much of a fine map is new detail: the share of its spatial variance that the
    # plain (s = 1) map, bilinearly interpolated to the fine grid, does not explain
    detail: dict = {}
    if 1 in shifts:
        for m in methods:
            if not m.startswith("patch_"):
                continue
            tok, mode = _tokens_of(m), m.split("_")[1]
            coarse = concept_maps(backbone, None, bank, mode=mode, patches=patches[1][tok]["test"])
            for sh in shifts:
                if sh == 1:
                    continue
                fine = concept_maps(
                    backbone, None, bank, mode=mode, patches=patches[sh][tok]["test"]
                ).values
                interp = upsample(coarse, grids[sh]).values
                resid = ((fine - interp) ** 2).sum(axis=(2, 3))
                total = ((fine - fine.mean(axis=(2, 3), keepdims=True)) ** 2).sum(axis=(2, 3))
                detail[f"{m}/s{sh}"] = float(np.mean(resid / np.maximum(total, 1e-12)))
        print("unexplained by bilinear interpolation of s=1:", json.dumps(detail), flush=True)
    out["fine_variance_not_from_plain_map"] = detail
    for concept in bank.names:
        sel = {}
        for name, batch in batches.items():
            present = np.flatnonzero(batch.concept(concept).astype(bool))
            primary = _targets(batch, concept)[0][1][present]
            sel[name] = present[primary.reshape(len(present), -1).any(axis=1)]
        if len(sel["test"]) == 0 or len(sel["calib"]) == 0:
            continue
        t0 = time.perf_counter()
        target = _targets(test, concept)[0][0]
        masks = {n: _targets(b, concept)[0][1][sel[n]] for n, b in batches.items()}
        imgs = {n: b.images[sel[n]] for n, b in batches.items()}
        ck, tk = masks["calib"], masks["test"]
        row: dict = {"target": target, "n": len(tk)}
        for sh in shifts:
            grid = grids[sh]
            maps = {}
            for name, batch in batches.items():
                stack = [
                    _method_maps(
                        m,
                        backbone,
                        batch.images,
                        sel[name],
                        concept,
                        modules[sh],
                        patches[sh][_tokens_of(m)][name],
                    )
                    for m in methods
                ]
                cov = _pool(masks[name].astype(np.float32), grid)
                ideal = upsample(
                    xr.DataArray(cov, dims=("sample", "y", "x")), masks[name].shape[1:]
                )
                maps[name] = np.stack([*stack, ideal.values], axis=1).astype(np.float64)
            patch = backbone.image_size // (grid // sh)
            res: dict = {
                "grid": grid,
                "ceiling": {
                    "bilinear": float(resolution_ceiling(tk, grid).mean()),
                    "window": float(resolution_ceiling(tk, grid, window=patch).mean()),
                },
            }
            kinds = {"bilinear": maps}
            for r in SHIFT_RADII:
                kinds[f"r{r}"] = {n: _guided(maps[n], imgs[n], ("colour", r, 1e-4)) for n in maps}
                res["ceiling"][f"r{r}"] = float(
                    _guided_ceiling(kinds[f"r{r}"]["test"][:, -1], tk).mean()
                )
            for j, m in enumerate(methods):
                res[m] = {}
                for kind, km in kinds.items():
                    cal, iou, th = _best_threshold_iou(km["calib"][:, j], ck, km["test"][:, j], tk)
                    per_image = mask_iou(km["test"][:, j], tk, threshold=th).values
                    res[m][kind] = {
                        "iou_calibrated": iou,
                        "iou_per_image": [round(float(v), 5) for v in per_image],
                        "calib_iou": cal,
                        "threshold": th,
                        "pointing": float(pointing_game(km["test"][:, j], tk).mean()),
                        "pointing_tol": float(
                            pointing_game(km["test"][:, j], tk, tolerance=tol).mean()
                        ),
                    }
            row[f"s{sh}"] = res
        row["seconds"] = time.perf_counter() - t0
        out["concepts"][concept] = row
        brief = {
            f"s{sh}": {
                "ceil": round(row[f"s{sh}"]["ceiling"]["bilinear"], 2),
                "ceil_win": round(row[f"s{sh}"]["ceiling"]["window"], 2),
                **{
                    m: (
                        round(row[f"s{sh}"][m]["bilinear"]["iou_calibrated"], 2),
                        round(row[f"s{sh}"][m]["r16"]["iou_calibrated"], 2),
                    )
                    for m in methods
                },
            }
            for sh in shifts
        }
        print(concept, target, json.dumps(brief), round(row["seconds"], 1), flush=True)
    rows = out["concepts"].values()
    # one guided radius per s: best mean calibration IoU over methods and concepts
    chosen = {}
    for sh in shifts:
        mean_cal = {
            k: float(np.mean([r[f"s{sh}"][m][k]["calib_iou"] for r in rows for m in methods]))
            for k in radii
        }
        chosen[sh] = max(mean_cal, key=mean_cal.get)
        out[f"s{sh}_mean_calib_iou_by_radius"] = mean_cal
    out["guided_radius_chosen"] = {str(sh): chosen[sh] for sh in shifts}
    for r in rows:
        for sh in shifts:
            for m in methods:
                r[f"s{sh}"][m]["guided"] = {"radius": chosen[sh], **r[f"s{sh}"][m][chosen[sh]]}
            r[f"s{sh}"]["ceiling"]["guided"] = r[f"s{sh}"]["ceiling"][chosen[sh]]
    # paired gain over the plain grid (same test images), with its standard error
    for r in rows:
        for sh in shifts:
            for m in methods:
                for kind in ("bilinear", "guided"):
                    if sh == 1 or 1 not in shifts:
                        continue
                    a = np.asarray(r[f"s{sh}"][m][kind]["iou_per_image"])
                    b = np.asarray(r["s1"][m][kind]["iou_per_image"])
                    diff = a - b
                    r[f"s{sh}"][m][kind]["gain_vs_s1"] = float(diff.mean())
                    r[f"s{sh}"][m][kind]["se_gain_vs_s1"] = (
                        float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None
                    )
    for r in rows:  # per-image IoUs are kept for bilinear and the chosen radius only
        for sh in shifts:
            for m in methods:
                for k in radii:
                    r[f"s{sh}"][m][k].pop("iou_per_image", None)
    groups = {
        "artifact": [c for c in out["concepts"] if c in ARTIFACTS],
        "structure": [c for c in out["concepts"] if c in test.structure_masks],
        "morphology": [
            c for c in out["concepts"] if c not in ARTIFACTS and c not in test.structure_masks
        ],
    }
    summary = {}
    for gname, cs in groups.items():
        for sh in shifts:
            for kind in ("bilinear", "guided"):
                summary[f"{gname}/s{sh}/ceiling_{kind}"] = float(
                    np.mean([out["concepts"][c][f"s{sh}"]["ceiling"][kind] for c in cs])
                )
                summary[f"{gname}/s{sh}/ceiling_window"] = float(
                    np.mean([out["concepts"][c][f"s{sh}"]["ceiling"]["window"] for c in cs])
                )
                for m in methods:
                    rs = [out["concepts"][c][f"s{sh}"][m][kind] for c in cs]
                    summary[f"{gname}/s{sh}/{m}/{kind}"] = {
                        k: float(np.mean([r[k] for r in rs]))
                        for k in ("iou_calibrated", "pointing", "pointing_tol")
                    }
    out["summary"] = summary
    return out


def _guided(maps, images, variant, grids=None):
    """Guided filter of pixel maps (n, K, S, S) with their images as guide, or (``jbu``)
    joint bilateral upsampling of the grid maps ``grids`` (n, K, g, g)."""
    from conceptlens.spatial import guided_filter, joint_bilateral_upsample

    kind, a, b = variant
    if kind == "jbu":
        return joint_bilateral_upsample(grids, images, sigma_spatial=a, sigma_range=b)
    g = images if kind == "colour" else images.mean(axis=-1) / 255.0
    return guided_filter(maps, g, radius=a, eps=b)


def _best_threshold_iou(cm, ck, tm, tk, grid=THRESHOLDS):
    """Threshold maximising mean IoU on the calibration maps; (calib IoU, test IoU, thr)."""
    from conceptlens.spatial import mask_iou

    scores = {float(th): float(mask_iou(cm, ck, threshold=th).mean()) for th in grid}
    th = max(scores, key=scores.get)
    return scores[th], float(mask_iou(tm, tk, threshold=th).mean()), th


def localization_guided(args):
    """Bilinear vs guided-filter upsampling of the same maps, same images, same split.

    Per method and concept (primary target only): IoU at the threshold calibrated on the
    calibration images for bilinear maps and for every guided variant; the variant is
    then chosen (a) once for all methods and concepts by mean calibration IoU
    (``guided_default``), (b) per method and concept on the calibration images
    (``guided_calibrated``). The ceiling (ideal patch map) is filtered the same way.
    """
    import xarray as xr

    from conceptlens.spatial import pointing_game, resolution_ceiling, upsample

    methods = args.guided_methods.split(",")
    backbone, bank, calib, test, modules, tol, patches, grid = _localization_setup(args, methods)
    variants = JBU_VARIANTS if args.variants == "jbu" else GUIDED_VARIANTS
    names = [_variant_name(v) for v in variants]
    out = {
        "tolerance_px": tol,
        "n_images": args.n_loc,
        "grid": grid,
        "methods": methods,
        "variants": names,
        "concepts": {},
    }
    for concept in bank.names:
        sel = {}
        for name, batch in (("calib", calib), ("test", test)):
            present = np.flatnonzero(batch.concept(concept).astype(bool))
            primary = _targets(batch, concept)[0][1][present]
            sel[name] = present[primary.reshape(len(present), -1).any(axis=1)]
        if len(sel["test"]) == 0 or len(sel["calib"]) == 0:
            continue
        target = _targets(test, concept)[0][0]
        t0 = time.perf_counter()
        maps, masks, imgs, grids = {}, {}, {}, {}
        for name, batch in (("calib", calib), ("test", test)):
            idx = sel[name]
            masks[name] = _targets(batch, concept)[0][1][idx]
            imgs[name] = batch.images[idx]
            stack = [
                _method_maps(
                    m, backbone, batch.images, idx, concept, modules, patches[_tokens_of(m)][name]
                )
                for m in methods
            ]
            # the ideal patch-level map (the mask's own coverage), upsampled the same way
            cov = _pool(masks[name].astype(np.float32), grid)
            ideal = upsample(xr.DataArray(cov, dims=("sample", "y", "x")), masks[name].shape[1:])
            maps[name] = np.stack([*stack, ideal.values], axis=1).astype(np.float64)
            if args.variants == "jbu":  # JBU works on the grid maps
                gstack = [
                    _pool(px, grid)
                    if m == "gradcam"
                    else _method_maps(
                        m,
                        backbone,
                        batch.images,
                        idx,
                        concept,
                        modules,
                        patches[_tokens_of(m)][name],
                        grid=True,
                    )
                    for m, px in zip(methods, stack, strict=True)
                ]
                grids[name] = np.stack([*gstack, cov], axis=1).astype(np.float64)
        row: dict = {"target": target, "n": len(sel["test"])}
        tk, ck = masks["test"], masks["calib"]
        row["ceiling"] = {"bilinear": float(resolution_ceiling(tk, grid).mean())}
        for j, m in enumerate(methods):
            cal, iou, th = _best_threshold_iou(maps["calib"][:, j], ck, maps["test"][:, j], tk)
            row[m] = {
                "bilinear": {
                    "iou_calibrated": iou,
                    "calib_iou": cal,
                    "threshold": th,
                    "pointing": float(pointing_game(maps["test"][:, j], tk).mean()),
                    "pointing_tol": float(
                        pointing_game(maps["test"][:, j], tk, tolerance=tol).mean()
                    ),
                },
                "guided": {},
            }
        for v, vname in zip(variants, names, strict=True):
            gm = {n: _guided(maps[n], imgs[n], v, grids.get(n)) for n in ("calib", "test")}
            for j, m in enumerate(methods):
                cal, iou, th = _best_threshold_iou(gm["calib"][:, j], ck, gm["test"][:, j], tk)
                row[m]["guided"][vname] = {
                    "iou_calibrated": iou,
                    "calib_iou": cal,
                    "threshold": th,
                    "pointing": float(pointing_game(gm["test"][:, j], tk).mean()),
                    "pointing_tol": float(
                        pointing_game(gm["test"][:, j], tk, tolerance=tol).mean()
                    ),
                }
            # guided ceiling: the ideal map filtered, best threshold per image
            ideal = gm["test"][:, -1]
            best = np.zeros(len(tk))
            for t in np.arange(1, 100) / 100.0:
                lo = ideal.min(axis=(1, 2), keepdims=True)
                span = np.maximum(ideal.max(axis=(1, 2), keepdims=True) - lo, 1e-12)
                pred = (ideal - lo) / span >= t
                inter = (pred & tk).sum(axis=(1, 2))
                union = (pred | tk).sum(axis=(1, 2))
                best = np.maximum(best, inter / np.maximum(union, 1))
            row["ceiling"][vname] = float(best.mean())
        for m in methods:
            g = row[m]["guided"]
            pick = max(names, key=lambda k, g=g: g[k]["calib_iou"])
            row[m]["guided_calibrated"] = {"variant": pick, **g[pick]}
        row["seconds"] = time.perf_counter() - t0
        out["concepts"][concept] = row
        brief = {
            m: (
                round(row[m]["bilinear"]["iou_calibrated"], 3),
                round(row[m]["guided_calibrated"]["iou_calibrated"], 3),
            )
            for m in methods
        }
        print(concept, target, json.dumps(brief), round(row["seconds"], 1), flush=True)
    # one variant for everything: best mean calibration IoU over methods and concepts
    rows = out["concepts"].values()
    mean_cal = {
        k: float(np.mean([r[m]["guided"][k]["calib_iou"] for r in rows for m in methods]))
        for k in names
    }
    default = max(mean_cal, key=mean_cal.get)
    out["default_variant"] = default
    out["mean_calib_iou_by_variant"] = mean_cal
    for r in rows:
        for m in methods:
            r[m]["guided_default"] = {"variant": default, **r[m]["guided"][default]}
    groups = {
        "artifact": [c for c in out["concepts"] if c in ARTIFACTS],
        "structure": [c for c in out["concepts"] if c in test.structure_masks],
        "morphology": [
            c for c in out["concepts"] if c not in ARTIFACTS and c not in test.structure_masks
        ],
    }
    summary = {}
    for gname, cs in groups.items():
        summary[f"{gname}/ceiling_bilinear"] = float(
            np.mean([out["concepts"][c]["ceiling"]["bilinear"] for c in cs])
        )
        summary[f"{gname}/ceiling_guided_default"] = float(
            np.mean([out["concepts"][c]["ceiling"][default] for c in cs])
        )
        for m in methods:
            for kind in ("bilinear", "guided_default", "guided_calibrated"):
                rs = [out["concepts"][c][m][kind] for c in cs]
                summary[f"{gname}/{m}/{kind}"] = {
                    k: float(np.mean([r[k] for r in rs]))
                    for k in ("iou_calibrated", "pointing", "pointing_tol")
                }
    out["summary"] = summary
    return out


GUIDED_ERROR_PAIRS = (
    ("ruler", "patch_relative"),
    ("ruler", "gradcam"),
    ("ruler", "prototype_atlas"),
    ("purple_ink", "patch_relative_value"),
    ("dark_corners", "patch_relative"),
    ("regression_structures", "gradcam"),
    ("regression_structures", "prototype_atlas"),
    ("blue_white_veil", "gradcam"),
    ("multiple_colors", "patch_relative_value"),
    ("gel_bubbles", "patch_relative_value"),
)


def guided_errors(args):
    """Standard errors of the key bilinear / guided IoUs of ``localization_guided``.

    Recomputes, on the same test images and at the thresholds stored in
    ``--guided-json``, the per-image IoU of bilinear and guided (the one variant) maps
    for the pairs in ``GUIDED_ERROR_PAIRS``; reports the means (which must equal the
    stored ones), the standard error of the guided mean and of the paired gain.
    """
    import conceptlens as cl
    from conceptlens.explain import concept_model_module
    from conceptlens.spatial import build_atlas, mask_iou

    ref = json.loads(Path(args.guided_json).read_text())["localization_guided"]
    default = ref["default_variant"]
    variant = next(v for v in GUIDED_VARIANTS if _variant_name(v) == default)
    backbone = cl.load_backbone("synthderm-lit")
    bank = cl.load_bank("synthderm")
    gen = cl.SynthDerm(args.preset)
    calib = gen.generate(args.n_loc, seed=args.seed + 101)
    test = gen.generate(args.n_loc, seed=args.seed + 202)
    modules = {"cosine": concept_model_module(backbone, bank, mode="cosine")}
    toks = sorted({_tokens_of(m) for _, m in GUIDED_ERROR_PAIRS})
    patches = {t: backbone.patch_embeddings(test.images, tokens=t)[0] for t in toks}
    modules["atlas_output"] = build_atlas(
        backbone,
        backbone.patch_embeddings(calib.images)[0],
        bank,
        n_prototypes=args.m,
        concept_labels=calib.concepts,
    )
    out = {"variant": default, "pairs": {}}
    for concept, method in GUIDED_ERROR_PAIRS:
        present = np.flatnonzero(test.concept(concept).astype(bool))
        masks = _targets(test, concept)[0][1]
        idx = present[masks[present].reshape(len(present), -1).any(axis=1)]
        k = masks[idx]
        maps = _method_maps(
            method, backbone, test.images, idx, concept, modules, patches[_tokens_of(method)]
        )
        row = ref["concepts"][concept][method]
        bil = mask_iou(maps, k, threshold=row["bilinear"]["threshold"]).values
        gm = _guided(maps[:, None].astype(np.float64), test.images[idx], variant)[:, 0]
        gd = mask_iou(gm, k, threshold=row["guided"][default]["threshold"]).values
        n = len(k)
        out["pairs"][f"{concept}/{method}"] = {
            "n": n,
            "iou_bilinear": float(bil.mean()),
            "iou_bilinear_stored": row["bilinear"]["iou_calibrated"],
            "iou_guided": float(gd.mean()),
            "iou_guided_stored": row["guided"][default]["iou_calibrated"],
            "se_guided": float(gd.std(ddof=1) / np.sqrt(n)),
            "gain": float((gd - bil).mean()),
            "se_gain": float((gd - bil).std(ddof=1) / np.sqrt(n)),
        }
        print(concept, method, json.dumps(out["pairs"][f"{concept}/{method}"]), flush=True)
    return out


_DATA: dict = {}


def _confounded_data(args):
    """SynthDerm split (train / in-domain test / held-out site), patches, CBM scores."""
    if _DATA:
        return _DATA
    import conceptlens as cl

    gen = cl.SynthDerm(args.preset)
    batch = gen.generate(args.n, seed=args.seed)
    backbone = cl.load_backbone("synthderm-lit")
    t = time.perf_counter()
    patches, _ = backbone.patch_embeddings(batch.images)
    embed_s = time.perf_counter() - t
    y = np.asarray(batch.class_names)[batch.labels]
    site = np.asarray(batch.site)
    held = np.flatnonzero(site == gen.config.heldout_site)
    indomain = np.flatnonzero(site != gen.config.heldout_site)
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(indomain)
    n_tr = int(0.7 * len(perm))
    train, test = np.sort(perm[:n_tr]), np.sort(perm[n_tr:])
    scores = cl.score_concepts(backbone, batch.to_dataset(), "synthderm", mode="relative")
    art = np.zeros(batch.lesion_mask.shape, bool)
    for a in ARTIFACTS:
        art |= batch.artifact_masks[a]
    _DATA.update(
        batch=batch,
        backbone=backbone,
        patches=patches,
        y=y,
        train=train,
        test=test,
        held=held,
        scores=scores,
        artifact_mask=art,
        embed_seconds_per_image=embed_s / len(batch.images),
    )
    return _DATA


def _acc(pred, y):
    return float(np.mean(np.asarray(pred).astype(str) == np.asarray(y).astype(str)))


def atlas(args):
    """Choose M: accuracy and prototype usage for M in {1, 3, 5, 10}."""
    from conceptlens.spatial import PrototypeClassifier, build_atlas

    d = _confounded_data(args)
    P, y, tr, te, ho = d["patches"], d["y"], d["train"], d["test"], d["held"]
    labels = d["batch"].concepts
    out = {}
    for m in (1, 3, 5, 10):
        row = {}
        for reseed in (False, True):
            t = time.perf_counter()
            at = build_atlas(
                d["backbone"],
                P[tr],
                "synthderm",
                n_prototypes=m,
                concept_labels=labels[tr],
                reseed=reseed,
                random_state=args.seed,
            )
            build_s = time.perf_counter() - t
            clf = PrototypeClassifier(atlas=at, random_state=args.seed).fit(P[tr], y[tr])
            row["reseed" if reseed else "no_reseed"] = {
                "prototypes": len(at),
                "alive": at.info["alive"],
                "alive_before_reseed": at.info["alive_before_reseed"],
                "nonzero_weights": int((np.abs(clf.coef_.values).max(0) > 0).sum()),
                "acc_indomain": _acc(clf.predict(P[te]), y[te]),
                "acc_heldout": _acc(clf.predict(P[ho]), y[ho]),
                "build_seconds": build_s,
            }
        out[f"M={m}"] = row
        print("atlas", m, json.dumps(row), flush=True)
    return out


def confounded(args):
    """Held-out-site accuracy: prototype model, refined, with feedback; CBM alongside."""
    from conceptlens.heads import ConceptBottleneckClassifier
    from conceptlens.spatial import (
        PrototypeClassifier,
        build_atlas,
        prototypes_on_masks,
        refinement_report,
        region_feedback,
    )

    d = _confounded_data(args)
    P, y, tr, te, ho = d["patches"], d["y"], d["train"], d["test"], d["held"]
    batch, S = d["batch"], d["scores"]
    labels = batch.concepts
    res: dict = {"n": args.n, "n_train": len(tr), "n_test": len(te), "n_heldout": len(ho)}

    def cbm_eval(scores):
        cbm = ConceptBottleneckClassifier(random_state=args.seed).fit(
            scores.isel(sample=tr), y[tr]
        )
        return {
            "acc_indomain": _acc(cbm.predict(scores.isel(sample=te)), y[te]),
            "acc_heldout": _acc(cbm.predict(scores.isel(sample=ho)), y[ho]),
        }

    res["cbm"] = cbm_eval(S)
    keep = [c for c in S.concept.values if c not in ARTIFACTS]
    res["cbm_without_artifact_concepts"] = cbm_eval(S.sel(concept=keep))
    at = build_atlas(
        d["backbone"],
        P[tr],
        "synthderm",
        n_prototypes=args.m,
        concept_labels=labels[tr],
        random_state=args.seed,
    )
    res["atlas"] = at.info
    clf = PrototypeClassifier(atlas=at, random_state=args.seed).fit(
        P[tr], y[tr], concept_labels=labels[tr]
    )

    def proto_eval(model):
        return {
            "acc_indomain": _acc(model.predict(P[te]), y[te]),
            "acc_heldout": _acc(model.predict(P[ho]), y[ho]),
            "nonzero_weights": int((np.abs(model.coef_.values).max(0) > 0).sum()),
        }

    res["prototype"] = proto_eval(clf)
    rel = clf.reliance(P[tr]).sel({"class": "melanoma"})
    art_protos = [q for q in clf.prototypes_ if q.split("/")[0] in ARTIFACTS]
    res["prototype"]["artifact_reliance_share_melanoma"] = float(
        np.abs(rel.sel(prototype=art_protos)).sum() / np.abs(rel).sum()
    )
    by_concept = clf.remove_concepts(list(ARTIFACTS))
    res["prototype_without_artifact_prototypes"] = proto_eval(by_concept)
    res["refinement_report_heldout"] = refinement_report(clf, by_concept, P[ho], y[ho])
    on_masks = prototypes_on_masks(at, d["artifact_mask"][tr], min_overlap=0.5)
    by_mask = clf.remove_prototypes(on_masks)
    res["prototype_without_mask_found_prototypes"] = {
        **proto_eval(by_mask),
        "removed": on_masks,
    }
    a = np.where(d["artifact_mask"], 0.0, 1.0).astype(np.float32)
    fb = {}
    for name, split in (("indomain", te), ("heldout", ho)):
        out = region_feedback(clf, P[split], importance=a[split])
        fb[f"acc_{name}"] = _acc(out.prediction.values, y[split])
    res["prototype_with_artifact_region_feedback"] = fb
    both = {}
    for name, split in (("indomain", te), ("heldout", ho)):
        out = region_feedback(by_concept, P[split], importance=a[split])
        both[f"acc_{name}"] = _acc(out.prediction.values, y[split])
    res["prototype_without_artifact_prototypes_and_feedback"] = both
    print("confounded", json.dumps(res, default=str)[:2000], flush=True)
    return res


def latency(args):
    """Region feedback per image after its patches are cached (CPU)."""
    import torch
    from threadpoolctl import threadpool_limits

    from conceptlens.spatial import PrototypeClassifier, build_atlas, region_feedback

    torch.set_num_threads(1)
    threadpool_limits(1)  # one core: BLAS threads only add contention for one image
    d = _confounded_data(args)
    P, y, tr, ho = d["patches"], d["y"], d["train"], d["held"]
    at = build_atlas(
        d["backbone"],
        P[tr],
        "synthderm",
        n_prototypes=args.m,
        concept_labels=d["batch"].concepts[tr],
        random_state=args.seed,
    )
    clf = PrototypeClassifier(atlas=at, random_state=args.seed).fit(
        P[tr], y[tr], concept_labels=d["batch"].concepts[tr]
    )
    times = []
    for i in ho[:100]:
        t = time.perf_counter()
        region_feedback(clf, P[i : i + 1], positive=[(24, 24, 72, 72)], negative=[(0, 0, 96, 12)])
        times.append(time.perf_counter() - t)
    ms = 1000 * np.asarray(times[5:])
    return {
        "prototypes": len(at),
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "embed_ms_per_image_batched": 1000 * d["embed_seconds_per_image"],
        "threads": 1,
    }


ZOOM_METHODS = "patch_relative,patch_relative_value,prototype_atlas,mask_prototypes"
ZOOM_RADII = (4, 8, 16)


def _zoom_settings(text):
    """``"1,2,4,2o2"`` -> ``[(1, 0), (2, 0), (4, 0), (2, 2)]`` (zoom, overlap in tokens)."""
    out = []
    for item in text.split(","):
        z, _, o = item.partition("o")
        out.append((int(z), int(o or 0)))
    return out


def _zoom_name(z, o):
    return f"z{z}" + (f"o{o}" if o else "")


def _mask_prototypes(unit, masks, grid, m, seed):
    """(m, D) unit k-means centroids of the calibration tokens on a concept's mask: the
    cells at least half covered, else the ``4 m`` most covered (no text involved)."""
    from sklearn.cluster import KMeans

    from conceptlens.spatial import pool_to_grid

    cov = pool_to_grid(masks.astype(np.float32), (grid, grid)).reshape(-1)
    flat = unit.reshape(-1, unit.shape[-1])
    order = np.argsort(-cov, kind="stable")
    keep = order[: max(int((cov >= 0.5).sum()), 4 * m)]
    keep = keep[cov[keep] > 0]
    km = KMeans(n_clusters=min(m, len(keep)), n_init=3, random_state=seed).fit(flat[keep])
    c = km.cluster_centers_
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _scores_agreement(plain, zoomed, present):
    """Per concept: Pearson r of plain vs zoomed image-level scores, and both AUROCs."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for j in range(plain.shape[1]):
        y = present[:, j]
        row = {"pearson": float(np.corrcoef(plain[:, j], zoomed[:, j])[0, 1])}
        if 0 < y.sum() < len(y):
            row["auroc_plain"] = float(roc_auc_score(y, plain[:, j]))
            row["auroc_zoomed"] = float(roc_auc_score(y, zoomed[:, j]))
        out[j] = row
    return out


ZOOM_TEXT_METHODS = ("patch_relative", "patch_relative_value", "prototype_atlas")


def _zoom_choice(out):
    """Per concept, the text-based map (method x setting x bilinear / guided) with the
    best calibration IoU, among the plain-grid ones (``z1``) and among all settings:
    what choosing the zoom per concept on labelled calibration images gives on test."""
    choice = {}
    for c, r in out["concepts"].items():
        row = {}
        for label, names in (("plain", ["z1"]), ("any", out["settings"])):
            cands = [
                (r[n][m][k]["calib_iou"], r[n][m][k]["iou_calibrated"], n, m, k)
                for n in names
                if n in r
                for m in ZOOM_TEXT_METHODS
                if m in r[n]
                for k in ("bilinear", "guided")
            ]
            if cands:
                cal, iou, n, m, k = max(cands)
                row[label] = {
                    "setting": n,
                    "method": m,
                    "upsample": k,
                    "calib_iou": cal,
                    "iou_calibrated": iou,
                }
        choice[c] = row
    return choice


def localization_zoom(args):
    """Zoomed inference: tokens that see 1/z of a patch; IoU and pointing game at each z.

    Same calibration and test images, targets (primary only) and threshold calibration
    as ``localization`` and ``localization_shift``; per setting (``--zooms``, e.g.
    ``1,2,4`` or ``2o2`` for z = 2 with tiles overlapping by 2 tokens) the patch tokens
    are ``patch_embeddings(zoom=z, zoom_overlap=o)``, the atlas is rebuilt from the
    calibration images' tokens at that setting, and ``mask_prototypes`` are k-means
    centroids (M = ``--m``) of the calibration tokens on the concept's mask at that
    setting -- a check that needs no text alignment at the new scale. Maps are upsampled
    bilinearly and guided-filtered (colour guide, eps 1e-4, radius in ``ZOOM_RADII``, one
    radius per setting chosen by mean calibration IoU). Ceiling:
    ``resolution_ceiling(masks, 12 z)`` -- cells of 8 / z px, which zoomed tokens see.
    Image level: the concept scores (``relative``) of the mean zoomed token (for the
    average-pooled synthderm-lit tower, the mean of the tiles' own image embeddings)
    against those of the plain image embedding.
    """
    import xarray as xr

    import conceptlens as cl
    from conceptlens.spatial import (
        build_atlas,
        concept_directions,
        mask_iou,
        pointing_game,
        resolution_ceiling,
        scaled_tolerance,
        upsample,
    )

    methods = args.zoom_methods.split(",")
    settings = _zoom_settings(args.zooms)
    names = [_zoom_name(z, o) for z, o in settings]
    backbone = cl.load_backbone("synthderm-lit")
    bank = cl.load_bank("synthderm")
    gen = cl.SynthDerm(args.preset)
    calib = gen.generate(args.n_loc, seed=args.seed + 101)
    test = gen.generate(args.n_loc, seed=args.seed + 202)
    tol = scaled_tolerance(backbone.image_size)
    toks = sorted({_tokens_of(m) for m in methods})
    batches = {"calib": calib, "test": test}
    patches, modules, grids, embed_s = {}, {}, {}, {}
    for (z, o), name in zip(settings, names, strict=True):
        t = time.perf_counter()
        patches[name] = {
            tok: {
                n: backbone.patch_embeddings(b.images, tokens=tok, zoom=z, zoom_overlap=o)[0]
                for n, b in batches.items()
            }
            for tok in toks
        }
        embed_s[name] = (time.perf_counter() - t) / (2 * len(toks) * args.n_loc)
        grids[name] = patches[name][toks[0]]["test"].shape[1]
        modules[name] = {}
        if "prototype_atlas" in methods:
            modules[name]["atlas_output"] = build_atlas(
                backbone,
                patches[name]["output"]["calib"],
                bank,
                n_prototypes=args.m,
                concept_labels=calib.concepts,
            )
        print(f"{name}: grid {grids[name]}, {embed_s[name]:.3f} s per image", flush=True)
    # image level: do the zoomed tokens still carry the image's concepts?
    w, _, _ = concept_directions(backbone, bank, mode="relative")
    present = np.concatenate([b.concepts for b in batches.values()]).astype(bool)

    def image_scores(name):
        emb = np.concatenate([patches[name]["output"][n].mean(axis=(1, 2)) for n in batches])
        return (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ w.T

    plain_name = names[settings.index((1, 0))] if (1, 0) in settings else None
    image_level = {}
    if plain_name is not None and "output" in toks:
        base = image_scores(plain_name)
        for name in names:
            agree = _scores_agreement(base, image_scores(name), present)
            image_level[name] = {
                "per_concept": {bank.names[j]: v for j, v in agree.items()},
                "mean_pearson": float(np.mean([v["pearson"] for v in agree.values()])),
                "mean_auroc_plain": float(
                    np.mean([v["auroc_plain"] for v in agree.values() if "auroc_plain" in v])
                ),
                "mean_auroc_zoomed": float(
                    np.mean([v["auroc_zoomed"] for v in agree.values() if "auroc_zoomed" in v])
                ),
            }
            print(
                f"image level {name}: r {image_level[name]['mean_pearson']:.3f}, AUROC "
                f"{image_level[name]['mean_auroc_plain']:.3f} -> "
                f"{image_level[name]['mean_auroc_zoomed']:.3f}",
                flush=True,
            )
    radii = [f"r{r}" for r in ZOOM_RADII]
    out = {
        "tolerance_px": tol,
        "n_images": args.n_loc,
        "settings": names,
        "grids": grids,
        "embed_seconds_per_image": embed_s,
        "methods": methods,
        "guided_radii_px": list(ZOOM_RADII),
        "image_level": image_level,
        "concepts": {},
    }
    for ci, concept in enumerate(bank.names):
        sel = {}
        for n, batch in batches.items():
            present_c = np.flatnonzero(batch.concept(concept).astype(bool))
            primary = _targets(batch, concept)[0][1][present_c]
            sel[n] = present_c[primary.reshape(len(present_c), -1).any(axis=1)]
        if len(sel["test"]) == 0 or len(sel["calib"]) == 0:
            continue
        t0 = time.perf_counter()
        masks = {n: _targets(b, concept)[0][1][sel[n]] for n, b in batches.items()}
        imgs = {n: b.images[sel[n]] for n, b in batches.items()}
        ck, tk = masks["calib"], masks["test"]
        row: dict = {"target": _targets(test, concept)[0][0], "n": len(tk)}
        for name in names:
            grid = grids[name]
            if "mask_prototypes" in methods:
                unit = patches[name]["output"]["calib"][sel["calib"]]
                unit = unit / np.linalg.norm(unit, axis=-1, keepdims=True)
                protos = _mask_prototypes(unit, ck, grid, args.m, args.seed + ci)
            maps = {}
            for n, batch in batches.items():
                stack = []
                for m in methods:
                    if m == "mask_prototypes":
                        u = patches[name]["output"][n][sel[n]]
                        u = u / np.linalg.norm(u, axis=-1, keepdims=True)
                        mm = xr.DataArray((u @ protos.T).max(axis=-1), dims=("sample", "y", "x"))
                        stack.append(upsample(mm, backbone.image_size).values)
                    else:
                        stack.append(
                            _method_maps(
                                m,
                                backbone,
                                batch.images,
                                sel[n],
                                concept,
                                modules[name],
                                patches[name][_tokens_of(m)][n],
                            )
                        )
                cov = _pool(masks[n].astype(np.float32), grid)
                ideal = upsample(xr.DataArray(cov, dims=("sample", "y", "x")), masks[n].shape[1:])
                maps[n] = np.stack([*stack, ideal.values], axis=1).astype(np.float64)
            res: dict = {
                "grid": grid,
                "ceiling": {"bilinear": float(resolution_ceiling(tk, grid).mean())},
            }
            kinds = {"bilinear": maps}
            for r in ZOOM_RADII:
                kinds[f"r{r}"] = {n: _guided(maps[n], imgs[n], ("colour", r, 1e-4)) for n in maps}
                res["ceiling"][f"r{r}"] = float(
                    _guided_ceiling(kinds[f"r{r}"]["test"][:, -1], tk).mean()
                )
            for j, m in enumerate(methods):
                res[m] = {}
                for kind, km in kinds.items():
                    cal, iou, th = _best_threshold_iou(km["calib"][:, j], ck, km["test"][:, j], tk)
                    res[m][kind] = {
                        "iou_calibrated": iou,
                        "iou_per_image": [
                            round(float(v), 5)
                            for v in mask_iou(km["test"][:, j], tk, threshold=th).values
                        ],
                        "calib_iou": cal,
                        "threshold": th,
                        "pointing": float(pointing_game(km["test"][:, j], tk).mean()),
                        "pointing_tol": float(
                            pointing_game(km["test"][:, j], tk, tolerance=tol).mean()
                        ),
                    }
            row[name] = res
        row["seconds"] = time.perf_counter() - t0
        out["concepts"][concept] = row
        brief = {
            name: {
                "ceil": round(row[name]["ceiling"]["bilinear"], 2),
                **{
                    m: (
                        round(row[name][m]["bilinear"]["iou_calibrated"], 2),
                        round(row[name][m]["r8"]["iou_calibrated"], 2),
                    )
                    for m in methods
                },
            }
            for name in names
        }
        print(concept, row["target"], json.dumps(brief), round(row["seconds"], 1), flush=True)
    rows = list(out["concepts"].values())
    chosen = {}
    for name in names:  # one guided radius per setting: best mean calibration IoU
        mean_cal = {
            k: float(np.mean([r[name][m][k]["calib_iou"] for r in rows for m in methods]))
            for k in radii
        }
        chosen[name] = max(mean_cal, key=mean_cal.get)
        out[f"{name}_mean_calib_iou_by_radius"] = mean_cal
    out["guided_radius_chosen"] = chosen
    for r in rows:
        for name in names:
            for m in methods:
                r[name][m]["guided"] = {"radius": chosen[name], **r[name][m][chosen[name]]}
                for k in radii:
                    r[name][m][k].pop("iou_per_image", None)
            r[name]["ceiling"]["guided"] = r[name]["ceiling"][chosen[name]]
    if plain_name is not None:  # paired gain over the plain grid (same test images)
        for r in rows:
            for name in names:
                for m in methods:
                    for kind in ("bilinear", "guided"):
                        if name == plain_name:
                            continue
                        a = np.asarray(r[name][m][kind]["iou_per_image"])
                        diff = a - np.asarray(r[plain_name][m][kind]["iou_per_image"])
                        r[name][m][kind]["gain_vs_z1"] = float(diff.mean())
                        r[name][m][kind]["se_gain_vs_z1"] = (
                            float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None
                        )
    groups = {
        "artifact": [c for c in out["concepts"] if c in ARTIFACTS],
        "structure": [c for c in out["concepts"] if c in test.structure_masks],
        "morphology": [
            c for c in out["concepts"] if c not in ARTIFACTS and c not in test.structure_masks
        ],
    }
    summary = {}
    for gname, cs in groups.items():
        for name in names:
            for kind in ("bilinear", "guided"):
                summary[f"{gname}/{name}/ceiling_{kind}"] = float(
                    np.mean([out["concepts"][c][name]["ceiling"][kind] for c in cs])
                )
                for m in methods:
                    rs = [out["concepts"][c][name][m][kind] for c in cs]
                    summary[f"{gname}/{name}/{m}/{kind}"] = {
                        k: float(np.mean([x[k] for x in rs]))
                        for k in ("iou_calibrated", "pointing", "pointing_tol")
                    }
    out["summary"] = summary
    out["chosen_on_calibration"] = _zoom_choice(out)
    return out


SEG_CONFIGS = (
    "both/logistic/200,both/mlp/200,pixel/logistic/200,pixel/mlp/200,token/mlp/200,"
    "pixel/mlp/25,pixel/mlp/50,both/mlp/25,both/mlp/50"
)
#: the segmenter's thresholds: the shared grid widened at both ends (its prior-shifted
#: probabilities of rare structures are small, its balanced ones large)
SEG_THRESHOLDS = np.round(
    np.r_[0.01, 0.02, 0.03, 0.05, np.arange(0.1, 0.95, 0.1), 0.95, 0.97, 0.98, 0.99], 2
)
#: options after ``features/classifier/n_train/`` ("+"-joined); absent ones are the
#: earlier defaults, spelled out so a config means the same when the defaults change
SEG_OPTIONS = {
    "fine": "a finer scale, 0.5 px",
    "ctx": "context scales 8 and 16 px",
    "ves": "Frangi vesselness (bright and dark lines) per scale",
    "std": "local standard deviation of intensity and chroma per scale",
    "h64": "64 hidden units (32 otherwise)",
    "it500": "500 L-BFGS iterations (200 otherwise)",
    "px40k": "40,000 training pixels per concept (10,000 otherwise)",
    "px100k": "100,000 training pixels per concept",
}
ZERO_SHOT_RESULTS = (
    "benchmarks/results/spatial_localization.json",
    "benchmarks/results/spatial_localization_guided.json",
    "benchmarks/results/spatial_localization_shift.json",
    "benchmarks/results/spatial_localization_zoom.json",
)
#: stored methods that learn from masks: not zero-shot
SUPERVISED_METHODS = ("mask_prototypes",)


def _seg_params(cfg):
    """``features/classifier/n_train[/opt+opt...]`` -> (n_train, ConceptSegmenter kwargs)."""
    feats, clf, n_train, *rest = cfg.split("/")
    opts = rest[0].split("+") if rest else []
    unknown = [o for o in opts if o not in SEG_OPTIONS]
    if unknown:
        raise SystemExit(f"unknown --seg-configs option(s) {unknown}; known: {list(SEG_OPTIONS)}")
    sigmas = (0.7, 1.0, 1.6, 2.5, 4.0)  # the first defaults, whatever they are now
    sigmas = ((0.5,) if "fine" in opts else ()) + sigmas + ((8.0, 16.0) if "ctx" in opts else ())
    kw = {
        "features": feats,
        "classifier": clf,
        "sigmas": sigmas,
        "vesselness": "ves" in opts,
        "local_std": "std" in opts,
        "hidden": 64 if "h64" in opts else 32,
        "max_iter": 500 if "it500" in opts else 200,
        "max_pixels": 100000 if "px100k" in opts else 40000 if "px40k" in opts else 10000,
    }
    return int(n_train), kw


def _best_zero_shot(concept, target):
    """Best calibrated test IoU of any zero-shot map in the stored results (primary target),
    and where it is: (iou, "file:path") or (None, None) when no result file is there.

    Every file of ``ZERO_SHOT_RESULTS`` (plain, guided, shifted and zoomed maps), every
    method but the mask-supervised ones (``SUPERVISED_METHODS``)."""
    best = (None, None)

    def walk(node, path):
        nonlocal best
        if any(f"/{m}" in path for m in SUPERVISED_METHODS):
            return
        if isinstance(node, dict):
            v = node.get("iou_calibrated")
            if isinstance(v, float) and (best[0] is None or v > best[0]):
                best = (v, path)
            for k, sub in node.items():
                walk(sub, f"{path}/{k}")

    for file in ZERO_SHOT_RESULTS:
        if not Path(file).is_file():
            continue
        part = next(iter(json.loads(Path(file).read_text()).values()))
        row = part.get("concepts", {}).get(concept)
        if row is None:
            continue
        if "target" in row:  # guided / shift / zoom: one (primary) target per concept
            if row["target"] == target:
                walk(row, f"{Path(file).stem}:")
        else:  # localization: method -> target -> numbers
            for method, per in row.items():
                if isinstance(per, dict) and isinstance(per.get(target), dict):
                    walk(per[target], f"{Path(file).stem}:/{method}")
    return best


def localization_seg(args):
    """Mask-supervised pixel segmentation (``ConceptSegmenter``), same calibration and test
    images, targets and threshold calibration as ``localization``; the segmenter's
    threshold is also calibrated on the wide grid ``SEG_THRESHOLDS``, for its
    prior-shifted (default) and class-balanced probabilities (``variants``). The
    headline ``iou_calibrated`` is prior-shifted, wide grid.

    Trained on a separate SynthDerm sample (``--seg-train`` images, seed + 303) with each
    concept's primary target mask (all False where the concept is absent); per
    configuration ``features/classifier/n_train[/opt+opt]`` (``--seg-configs``, options
    in ``SEG_OPTIONS``, absent ones at the first defaults; fewer training images are the
    first n of the sample): per concept the calibrated pixel IoU (the
    threshold chosen on the calibration images), IoU at 0.5, pointing game with and
    without tolerance; fit seconds and predict seconds per image. Next to it, in the same
    run, the zero-shot ``patch_relative`` map (bilinear), the resolution ceiling of the
    token grid, and the best zero-shot number stored in the earlier result files.
    """
    import conceptlens as cl
    from conceptlens.spatial import (
        ConceptSegmenter,
        mask_iou,
        pointing_game,
        resolution_ceiling,
    )

    backbone, bank, calib, test, modules, tol, patches, grid = _localization_setup(
        args, ["patch_relative"]
    )
    train = cl.SynthDerm(args.preset).generate(args.seg_train, seed=args.seed + 303)
    t0 = time.perf_counter()
    train_patches = backbone.patch_embeddings(train.images)[0]
    embed_s = (time.perf_counter() - t0) / len(train)
    concepts = list(bank.names)

    def target_masks(batch, concept):
        present = batch.concept(concept).astype(bool)
        return _targets(batch, concept)[0][1] & present[:, None, None]

    train_masks = {c: target_masks(train, c) for c in concepts}
    sel, masks, targets = {}, {}, {}
    for c in concepts:
        targets[c] = _targets(test, c)[0][0]
        for name, batch in (("calib", calib), ("test", test)):
            k = target_masks(batch, c)
            sel[(c, name)] = np.flatnonzero(k.reshape(len(k), -1).any(axis=1))
            masks[(c, name)] = k[sel[(c, name)]]
    concepts = [c for c in concepts if len(sel[(c, "calib")]) and len(sel[(c, "test")])]
    out = {
        "tolerance_px": tol,
        "n_images": args.n_loc,
        "n_train_sample": args.seg_train,
        "train_seed": args.seed + 303,
        "grid": grid,
        "embed_seconds_per_image": embed_s,
        "configs": {},
        "concepts": {},
    }
    for c in concepts:
        tk, ck = masks[(c, "test")], masks[(c, "calib")]
        rel = {
            n: _method_maps(
                "patch_relative", backbone, b.images, sel[(c, n)], c, modules, patches["output"][n]
            )
            for n, b in (("calib", calib), ("test", test))
        }
        _, rel_iou, _ = _best_threshold_iou(rel["calib"], ck, rel["test"], tk)
        _, rel_wide, _ = _best_threshold_iou(rel["calib"], ck, rel["test"], tk, SEG_THRESHOLDS)
        zs, where = _best_zero_shot(c, targets[c])
        out["concepts"][c] = {
            "target": targets[c],
            "n": len(tk),
            "n_calib": len(ck),
            "ceiling": float(resolution_ceiling(tk, grid).mean()),
            "zero_shot_rel_same_run": rel_iou,
            "zero_shot_rel_same_run_wide_grid": rel_wide,
            "best_zero_shot_stored": zs,
            "best_zero_shot_where": where,
            "train_images_with_concept": int(train.concept(c).sum()),
        }
    for cfg in args.seg_configs.split(","):
        n_train, kw = _seg_params(cfg)
        seg = ConceptSegmenter(**kw, random_state=args.seed)
        t = time.perf_counter()
        seg.fit(
            backbone,
            train.images[:n_train],
            {c: train_masks[c][:n_train] for c in concepts if train_masks[c][:n_train].any()},
            patches=train_patches[:n_train],
        )
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        pred = {
            "calib": seg.predict_maps(backbone, calib.images, patches=patches["output"]["calib"]),
            "test": seg.predict_maps(backbone, test.images, patches=patches["output"]["test"]),
        }
        pred_s = (time.perf_counter() - t) / (len(calib) + len(test))
        bal = {  # the class-balanced probabilities: the same logits without the prior shift
            n: seg.predict_maps(backbone, b.images, balanced=True, patches=patches["output"][n])
            for n, b in (("calib", calib), ("test", test))
        }
        rows = {}
        for c in concepts:
            if c not in seg.concepts_:
                continue
            tk, ck = masks[(c, "test")], masks[(c, "calib")]
            variants = {}
            for prob, maps in (("prior", pred), ("balanced", bal)):
                cm = maps["calib"].sel(concept=c).values[sel[(c, "calib")]]
                tm = maps["test"].sel(concept=c).values[sel[(c, "test")]]
                for gname, grid_ in (("shared", THRESHOLDS), ("wide", SEG_THRESHOLDS)):
                    cal, iou, th = _best_threshold_iou(cm, ck, tm, tk, grid_)
                    per_image = mask_iou(tm, tk, threshold=th).values
                    variants[f"{prob}/{gname}"] = {
                        "iou_calibrated": iou,
                        "iou_se": float(per_image.std(ddof=1) / np.sqrt(len(per_image))),
                        "iou_per_image": [round(float(v), 5) for v in per_image],
                        "calib_iou": cal,
                        "threshold": th,
                    }
                variants[f"{prob}/iou_0.5"] = float(mask_iou(tm, tk, threshold=0.5).mean())
            # headline: prior-shifted probabilities, wide grid (what the library returns)
            tm = pred["test"].sel(concept=c).values[sel[(c, "test")]]
            rows[c] = {
                **variants["prior/wide"],
                "iou_0.5": variants["prior/iou_0.5"],
                "pointing": float(pointing_game(tm, tk).mean()),
                "pointing_tol": float(pointing_game(tm, tk, tolerance=tol).mean()),
                "pixel_prior": seg.pixel_prior_[c],
                "train_pixels": seg.n_train_pixels_[c],
                "variants": variants,
            }
        out["configs"][cfg] = {
            **kw,
            "n_train": n_train,
            "n_features": len(seg.feature_names_),
            "fit_seconds": fit_s,
            "predict_seconds_per_image": pred_s,
            "n_iter": seg.n_iter_,
            "final_gradient": seg.final_gradient_,
            "concepts": rows,
        }
        brief = {c: round(r["iou_calibrated"], 2) for c, r in rows.items()}
        print(cfg, round(fit_s, 1), round(pred_s, 3), json.dumps(brief), flush=True)
    groups = {
        "artifact": [c for c in concepts if c in ARTIFACTS],
        "structure": [c for c in concepts if c in test.structure_masks],
        "morphology": [
            c for c in concepts if c not in ARTIFACTS and c not in test.structure_masks
        ],
    }
    summary = {}
    for gname, cs in groups.items():
        for key in (
            "ceiling",
            "zero_shot_rel_same_run",
            "zero_shot_rel_same_run_wide_grid",
            "best_zero_shot_stored",
        ):
            vals = [out["concepts"][c][key] for c in cs if out["concepts"][c][key] is not None]
            summary[f"{gname}/{key}"] = float(np.mean(vals)) if vals else None
        for cfg, res in out["configs"].items():
            rs = [res["concepts"][c] for c in cs if c in res["concepts"]]
            summary[f"{gname}/{cfg}"] = {
                k: float(np.mean([r[k] for r in rs]))
                for k in ("iou_calibrated", "calib_iou", "iou_0.5", "pointing", "pointing_tol")
            }
            for v in ("prior/shared", "prior/wide", "balanced/shared", "balanced/wide"):
                summary[f"{gname}/{cfg}"][v] = {
                    k: float(np.mean([r["variants"][v][k] for r in rs]))
                    for k in ("iou_calibrated", "calib_iou")
                }
    out["summary"] = summary
    out["mean_calib_iou_by_config"] = _seg_choice_by_calibration(out)
    return out


def _seg_choice_by_calibration(out):
    """Mean IoU on the CALIBRATION images (all concepts) of every configuration fitted on
    the most training images (prior-shifted probabilities, wide threshold grid; and per
    probability / grid variant): the features and classifier to choose."""
    n_max = max(v["n_train"] for v in out["configs"].values())
    res = {}
    for k, v in out["configs"].items():
        if v["n_train"] != n_max:
            continue
        rs = list(v["concepts"].values())
        res[k] = float(np.mean([r["calib_iou"] for r in rs]))
        for var in ("prior/shared", "prior/wide", "balanced/shared", "balanced/wide"):
            res[f"{k} [{var}]"] = float(np.mean([r["variants"][var]["calib_iou"] for r in rs]))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="all")
    ap.add_argument("--preset", default="confounded")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-loc", type=int, default=80, help="images per localisation split")
    ap.add_argument("--n-ig", type=int, default=6, help="images per concept for IG")
    ap.add_argument("--n", type=int, default=1000, help="images for atlas/confounded")
    ap.add_argument("--m", type=int, default=5, help="prototypes per concept")
    ap.add_argument(
        "--methods",
        default=",".join(
            [
                "patch_cosine",
                "patch_relative",
                "patch_cosine_value",
                "patch_relative_value",
                "patch_cosine_self",
                "patch_relative_self",
                "prototype_atlas",
                "prototype_atlas_value",
                "gradcam",
                "integrated_gradients",
            ]
        ),
    )
    ap.add_argument(
        "--guided-methods",
        default=GUIDED_METHODS,
        help="methods compared with bilinear vs guided upsampling (--part localization_guided)",
    )
    ap.add_argument(
        "--variants",
        choices=("guided", "jbu"),
        default="guided",
        help="localization_guided: guided-filter or joint-bilateral-upsampling variants",
    )
    ap.add_argument(
        "--guided-json",
        default="benchmarks/results/spatial_localization_guided.json",
        help="localization_guided results whose thresholds --part guided_errors reuses",
    )
    ap.add_argument(
        "--shifts",
        default="1,2",
        help="localization_shift: shifted-inference factors s (token grid 12 s x 12 s)",
    )
    ap.add_argument(
        "--shift-methods",
        default=SHIFT_METHODS,
        help="methods measured on finer token grids (--part localization_shift)",
    )
    ap.add_argument(
        "--zooms",
        default="1,2",
        help="localization_zoom: zoom factors z (token grid 12 z x 12 z), 'zoz' with overlap",
    )
    ap.add_argument(
        "--zoom-methods",
        default=ZOOM_METHODS,
        help="methods measured with zoomed inference (--part localization_zoom)",
    )
    ap.add_argument("--seg-train", type=int, default=200, help="localization_seg: training images")
    ap.add_argument(
        "--seg-configs",
        default=SEG_CONFIGS,
        help="localization_seg: features/classifier/n_train per ConceptSegmenter fit",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    parts = (  # localization_guided, guided_errors, localization_shift, _zoom on request
        ["localization", "atlas", "confounded", "latency"]
        if args.part == "all"
        else args.part.split(",")
    )
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
