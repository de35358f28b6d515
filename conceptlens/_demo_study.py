"""The demo's study step: audit, shortcut finder, test-time masking, PDF reports, finding.

Called at the end of :func:`conceptlens._demo.run_demo` with what it computed; every step
is a public function of :mod:`conceptlens.studies`, :mod:`conceptlens.masking` and
:mod:`conceptlens.reports`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["DEMO_SHOTS", "run_study"]

# labelled held-out-site images per class given to test-time masking
DEMO_SHOTS = 8


def _shots(y: np.ndarray, idx: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` random positions per class from ``idx`` (the shots) and the rest."""
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(y[idx]):
        pool = idx[y[idx] == cls]
        chosen.extend(rng.choice(pool, size=min(k, len(pool) // 2), replace=False).tolist())
    shots = np.sort(np.asarray(chosen, dtype=int))
    return shots, np.setdiff1d(idx, shots)


def run_study(
    *,
    cbm: Any,
    probe: Any,
    scores: xr.DataArray,
    embeddings: np.ndarray,
    dataset: Any,
    y: np.ndarray,
    splits: dict[str, np.ndarray],
    heldout: str,
    meta: dict[str, Any],
    out_dir: Path | None,
    seed: int,
    n_boot: int,
    say: Any,
    backbone: Any = None,
    bank: Any = None,
) -> dict[str, Any]:
    """Audit, shortcuts, test-time masking and the two PDFs; returns what it found.

    Returns
    -------
    dict
        ``audit`` (xr.Dataset), ``shortcuts`` (DataFrame), ``masking`` (dict), ``finding``
        (one paragraph), ``reports`` (paths written), ``timings``.
    """
    from conceptlens.masking import TestTimeMasking, intervention_curve
    from conceptlens.reports import audit_report, audit_summary, case_report
    from conceptlens.studies import audit, find_shortcuts

    timings: dict[str, float] = {}
    train, test, held = splits["train"], splits["in_domain"], splits["heldout"]
    split_held = f"heldout_{heldout}"
    t0 = time.perf_counter()
    rows = np.concatenate([test, held])
    res = audit(
        {"concept_bottleneck": cbm, "linear_probe": probe},
        scores.isel(sample=rows),
        inputs={"linear_probe": embeddings[rows]},
        labels=y[rows],
        split={"in_domain": np.arange(len(test)), split_held: np.arange(len(test), len(rows))},
        groups=["skin_tone"] if "skin_tone" in scores.coords else (),
        reference="in_domain",
        n_boot=n_boot,
        seed=seed,
    )
    shortcuts = find_shortcuts(cbm, scores.isel(sample=rows), labels=y[rows], by="site")
    timings["audit"] = time.perf_counter() - t0
    say(f"audited both models and ran the shortcut finder in {timings['audit']:.1f} s")

    t0 = time.perf_counter()
    shots, rest = _shots(y, held, DEMO_SHOTS, seed)
    ttm = TestTimeMasking(cbm, source_scores=scores.isel(sample=train), source_labels=y[train])
    ttm.fit(scores.isel(sample=shots), y[shots])
    report = ttm.report()
    target = scores.isel(sample=rest)
    masking = {
        "split": split_held,
        "accuracy_before": float(np.mean(np.asarray(cbm.predict(target)) == y[rest])),
        "accuracy_after": float(np.mean(np.asarray(ttm.predict(target)) == y[rest])),
        "concepts": [str(c) for c in report["concept"][report["action"] == "mask"]]
        if len(report)
        else [],
        "report": report,
        "n_shots": len(shots),
    }
    curves = None
    if any(c in scores.coords for c in scores["concept"].values.astype(str)):
        ref = scores.isel(sample=train)
        curves = {
            name: intervention_curve(
                cbm, scores.isel(sample=idx), y[idx], reference_scores=ref, n_random=5, seed=seed
            )
            for name, idx in (("in_domain", test), (split_held, held))
        }
    timings["masking"] = time.perf_counter() - t0
    say(
        f"test-time masking with {DEMO_SHOTS} labelled {heldout} images per class: accuracy "
        f"{masking['accuracy_before']:.3f} -> {masking['accuracy_after']:.3f} on the other "
        f"{len(rest)} ({timings['masking']:.1f} s)"
    )

    sentences = audit_summary(
        res, model=cbm, model_name="concept_bottleneck", shortcuts=shortcuts, masking=masking
    )
    keep = [s for s in sentences if not s.startswith(("At ", "concept_bottleneck - "))]
    finding = " ".join(keep)
    paths: dict[str, Path] = {}
    if out_dir is not None:
        t0 = time.perf_counter()
        images = [np.asarray(dataset[int(i)].image) for i in range(min(8, len(dataset)))]
        description = (
            f"SynthDerm '{meta['preset']}' (n={meta['n']}, seed {seed}): training sites "
            f"{', '.join(sorted(set(np.asarray(scores['site'].values)[train].astype(str))))} "
            f"({len(train)} images to fit, {len(test)} in-domain test images), held-out site "
            f"{heldout} ({len(held)} images); {DEMO_SHOTS} labelled {heldout} images per class "
            "given to test-time masking."
        )
        paths["audit"] = audit_report(
            out_dir / "audit.pdf",
            res,
            model=cbm,
            model_name="concept_bottleneck",
            scores=scores,
            shortcuts=shortcuts,
            masking=masking,
            intervention_curves=curves,
            images=_Gallery(images, dataset),
            description=description,
            seeds={"data and split": seed, "head": seed},
            title="conceptlens demo: audit",
        )
        case = _heldout_melanoma(cbm, scores, y, held)
        if case is not None:
            image = np.asarray(dataset[int(case)].image)
            maps = _concept_maps(backbone, bank, image) if backbone is not None else None
            paths["case"] = case_report(
                out_dir / "case_heldout_melanoma.pdf",
                cbm,
                scores,
                int(case),
                image=image,
                reference_scores=scores.isel(sample=train),
                label=str(y[case]),
                concept_maps=maps,
                title=f"Case report: held-out-site melanoma {scores['sample'].values[case]}",
            )
        top = list(dict.fromkeys(shortcuts["concept"].astype(str)))[:2]
        paths["figure"] = _shortcut_figure(scores, y, top, heldout, out_dir / "shortcut.png")
        timings["reports"] = time.perf_counter() - t0
        say(f"wrote {', '.join(str(p) for p in paths.values())} in {timings['reports']:.1f} s")
    return {
        "audit": res,
        "shortcuts": shortcuts,
        "masking": masking,
        "finding": finding,
        "reports": paths,
        "timings": timings,
    }


class _Gallery:
    """The few attributes of a SynthDerm batch that the report's montage reads."""

    def __init__(self, images: list[np.ndarray], dataset: Any) -> None:
        meta = dataset.metadata.iloc[: len(images)]
        names = [
            c for c in ("ruler", "purple_ink", "dark_corners", "hair", "gel_bubbles") if c in meta
        ]
        self.images = np.stack(images)
        self.class_names = list(dataset.classes)
        self.labels = np.asarray(dataset.labels)[: len(images)]
        self.site = meta["site"].astype(str).to_numpy()
        self.concept_names = names
        self.concept_groups = ["artifact"] * len(names)
        self.concepts = meta[names].to_numpy().astype(int) if names else np.zeros((len(images), 0))


def _shortcut_figure(
    scores: xr.DataArray, y: np.ndarray, concepts: list[str], heldout: str, path: Path
) -> Path:
    """The top suspects' scores per class at each site, as a PNG (README's figure)."""
    from matplotlib.figure import Figure

    from conceptlens._io import atomic_path
    from conceptlens.plot import concept_distributions

    site = np.asarray(scores["site"].values).astype(str)
    sites = sorted(set(site))
    lesion = [c for c in ("blue_white_veil",) if c in set(scores["concept"].values.astype(str))]
    shown = list(dict.fromkeys(concepts + lesion))
    fig = Figure(figsize=(3 * len(sites), 3.0), layout="constrained")
    axes = fig.subplots(1, len(sites), sharey=True, squeeze=False)[0]
    labelled = scores.assign_coords(label=("sample", np.asarray(y).astype(str)))
    for ax, name in zip(axes, sites, strict=True):
        concept_distributions(labelled[site == name], shown, by="label", ax=ax)
        ax.set_title(f"{name} ({'held out' if name == heldout else 'training'})")
        if name != sites[0]:
            ax.get_legend().remove()
            ax.set_ylabel("")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    return path


def _heldout_melanoma(cbm: Any, scores: xr.DataArray, y: np.ndarray, held: np.ndarray) -> Any:
    """A held-out-site melanoma, preferably one the concept head gets wrong."""
    mel = held[y[held] == "melanoma"]
    if not len(mel):
        return None
    wrong = mel[np.asarray(cbm.predict(scores.isel(sample=mel))) != "melanoma"]
    return int((wrong if len(wrong) else mel)[0])


def _concept_maps(backbone: Any, bank: Any, image: np.ndarray) -> Any:
    """Patch concept maps of the case (relative similarity, upsampled to the image)."""
    from conceptlens.spatial import concept_maps

    return concept_maps(backbone, image[None], bank, mode="relative", resize=True)
