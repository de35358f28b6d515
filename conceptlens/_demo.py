"""``conceptlens demo``: the main job end to end on the embedded default.

SynthDerm (``confounded`` preset) -> synthderm-lit embeddings (cached) -> SynthDerm concept
bank scores -> a sparse concept-bottleneck head selected along its regularisation path
and a linear probe on the embeddings -> in-domain and held-out-site metrics with
bootstrap confidence intervals, and the top concepts per class.

Every step is a public function call; this module only composes them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import xarray as xr

from conceptlens._io import atomic_path, atomic_write_text, cache_root, user_path

__all__ = ["MIN_N", "DemoResult", "format_summary", "run_demo"]

# Fewest images the demo accepts: with fewer, a class can end up with too few training-site
# images for the stratified train/test split and the head's validation split.
MIN_N = 100
# Fewest training-site images per class after generation (checked before any model work).
MIN_PER_CLASS = 5


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` computed.

    Attributes
    ----------
    metrics : xr.Dataset
        ``estimate``, ``ci_low``, ``ci_high``, ``n_samples`` with dims
        ``("model", "split", "metric")``.
    scores : xr.DataArray
        The ``concept_score`` matrix, dims ``("sample", "concept")``.
    model : ConceptBottleneckClassifier
        The fitted concept-bottleneck head; it takes ``scores`` as they are (it standardises
        internally with the training rows' mean and standard deviation).
    top_concepts : dict
        Class name -> list of ``(concept, weight)`` with the largest absolute weights, per
        training standard deviation of the score (positive: evidence for the class;
        negative: evidence against it).
    splits : dict
        ``"train"``, ``"in_domain"`` (test at the training sites) and ``"heldout"``
        -> integer positions into ``scores``.
    timings : dict
        Seconds per stage.
    study : dict or None
        The audit, shortcut finder and test-time masking results, the finding in words
        and the PDF reports written (:func:`conceptlens._demo_study.run_study`); None
        when the study step was not run.
    """

    metrics: xr.Dataset
    scores: xr.DataArray
    model: Any
    top_concepts: dict[str, list[tuple[str, float]]]
    splits: dict[str, np.ndarray]
    timings: dict[str, float]
    study: dict[str, Any] | None = None


def _split(labels: np.ndarray, site: np.ndarray, heldout: str, test_fraction: float, seed: int):
    """Stratified in-domain train/test split of the training sites; the held-out site apart."""
    from conceptlens.data import stratified_split

    indomain = np.flatnonzero(site != heldout)
    train, test = stratified_split(labels, test_fraction, seed=seed, indices=indomain)
    return train, test, np.flatnonzero(site == heldout)


def run_demo(
    *,
    n: int = 3000,
    seed: int = 0,
    preset: str = "confounded",
    out_dir: str | os.PathLike[str] | None = "reports/demo",
    cache_dir: str | os.PathLike[str] | None = None,
    max_concepts_per_class: int = 10,
    n_boot: int = 1000,
    echo: Any = None,
    study: bool = True,
) -> DemoResult:
    """Run the demo and return its results (also written to ``out_dir`` when given).

    Parameters
    ----------
    n : int, default=3000
        SynthDerm images to generate (training sites and held-out site together); at
        least ``MIN_N`` (100).
    seed : int, default=0
        Seed of the data, the split and the bootstrap.
    preset : str, default="confounded"
        SynthDerm preset; it must name a held-out site.
    out_dir : path or None, default="reports/demo"
        Where ``scores.nc``, ``metrics.nc``, ``metrics.csv``, ``summary.txt`` and the
        fitted head (``model/``) go; ``None`` writes nothing.
    cache_dir : path, optional
        Embedding cache (default :func:`conceptlens._io.cache_root`); a rerun encodes nothing.
    max_concepts_per_class : int, default=10
        The head is chosen along its path as the most accurate one on a validation split
        that uses at most this many concepts per class.
    n_boot : int, default=1000
        Bootstrap replicates for the confidence intervals.
    echo : callable, optional
        Called with one line of progress text per stage.
    study : bool, default=True
        Also audit both models, run the shortcut finder and test-time masking at the
        held-out site, and (with ``out_dir``) write ``audit.pdf`` and
        ``case_heldout_melanoma.pdf``.

    Returns
    -------
    DemoResult
    """
    from conceptlens.backbones import load_backbone
    from conceptlens.concepts import embed_images, load_bank, score_concepts
    from conceptlens.exceptions import ConfigError
    from conceptlens.heads import (
        ConceptBottleneckClassifier,
        LinearProbe,
        classification_metrics,
        save_head,
    )
    from conceptlens.synthderm import SynthDerm

    if n < MIN_N:
        raise ConfigError(
            f"the demo needs at least {MIN_N} images (n={n}); with fewer, a class has too "
            "few training-site images to split and select a head"
        )
    say = echo or (lambda _msg: None)
    timings: dict[str, float] = {}
    cache = user_path(cache_dir) if cache_dir is not None else cache_root()

    t0 = time.perf_counter()
    gen = SynthDerm(preset)
    heldout = gen.config.heldout_site
    if heldout is None:
        raise ConfigError(
            f"the demo needs a SynthDerm preset with a held-out site; {preset!r} has none "
            "(use 'confounded')."
        )
    dataset = gen.generate(n, seed=seed).to_dataset()
    site_col = np.asarray(dataset.metadata["site"]).astype(str)
    counts = pd.Series(np.asarray(dataset.classes)[np.asarray(dataset.labels)])
    counts = counts[site_col != heldout].value_counts().reindex(dataset.classes, fill_value=0)
    if counts.min() < MIN_PER_CLASS:
        raise ConfigError(
            f"with n={n} and seed={seed}, class {counts.idxmin()!r} has only "
            f"{int(counts.min())} images at the training sites (the demo needs "
            f"{MIN_PER_CLASS}); use a larger n"
        )
    timings["generate"] = time.perf_counter() - t0
    say(f"generated {n} SynthDerm images ({preset}, seed {seed}) in {timings['generate']:.1f} s")

    t0 = time.perf_counter()
    say("loading synthderm-lit (its first load in a process verifies the MiniLM weights) ...")
    backbone = load_backbone("synthderm-lit")
    bank = load_bank("synthderm")
    scores = score_concepts(backbone, dataset, bank, mode="relative", cache=cache)
    embeddings = embed_images(backbone, dataset, cache=cache)
    timings["score"] = time.perf_counter() - t0
    say(
        f"scored {len(bank.names)} concepts with {backbone.name} in {timings['score']:.1f} s "
        f"(embedding cache: {cache})"
    )

    classes = list(dataset.classes)
    labels = np.asarray(dataset.labels)
    y = np.asarray(classes, dtype=object)[labels]
    site = np.asarray(scores["site"].values).astype(str)
    train, test, held = _split(labels, site, heldout, 0.3, seed)

    t0 = time.perf_counter()
    # the head standardises internally (learned on the training rows) and reports coef_ on
    # the scale of the raw scores, so the saved model applies to the saved scores as they are
    cbm = ConceptBottleneckClassifier(
        max_concepts_per_class=max_concepts_per_class, random_state=seed
    ).fit(scores.isel(sample=train), y[train])
    probe = LinearProbe(C=0.1).fit(embeddings[train], y[train])
    timings["fit"] = time.perf_counter() - t0
    say(f"fitted the concept head along its path and a linear probe in {timings['fit']:.1f} s")

    t0 = time.perf_counter()
    parts = []
    models = {"concept_bottleneck": cbm, "linear_probe": probe}
    inputs: dict[str, Any] = {"concept_bottleneck": scores, "linear_probe": embeddings}
    for model_name, model in models.items():
        for split_name, idx in (("in_domain", test), (f"heldout_{heldout}", held)):
            x = inputs[model_name]
            x = x.isel(sample=idx) if isinstance(x, xr.DataArray) else x[idx]
            m = classification_metrics(
                y[idx], model.predict_proba(x), classes=model.classes_, n_boot=n_boot, seed=seed
            )
            parts.append(
                m.sel(group="all", drop=True).expand_dims(model=[model_name], split=[split_name])
            )
    # every part is a Dataset, so the combination is one too
    metrics = cast(xr.Dataset, xr.combine_by_coords(parts))
    metrics.attrs.update(
        preset=preset, n=n, seed=seed, heldout_site=heldout, backbone=backbone.name,
        bank=f"{bank.id}@{bank.version}", n_boot=n_boot,
    )  # fmt: skip
    timings["evaluate"] = time.perf_counter() - t0

    # weights per training standard deviation of each score: comparable across concepts
    coef_std = cbm.coef_ * scores.isel(sample=train).std("sample")
    top = {}
    for cls in coef_std["class"].values:
        row = coef_std.sel({"class": cls})
        order = np.argsort(-np.abs(row.values), kind="stable")[:max_concepts_per_class]
        top[str(cls)] = [
            (str(row.concept.values[j]), float(row.values[j])) for j in order if row.values[j]
        ]
    result = DemoResult(
        metrics=metrics,
        scores=scores,
        model=cbm,
        top_concepts=top,
        splits={"train": train, "in_domain": test, "heldout": held},
        timings=timings,
    )
    if out_dir is not None:
        _write_outputs(user_path(out_dir), result)
        save_head(cbm, user_path(out_dir) / "model", trained_on=scores)
    if study:
        result = _with_study(
            result,
            probe=probe,
            embeddings=embeddings,
            dataset=dataset,
            y=y,
            heldout=heldout,
            out_dir=out_dir,
            seed=seed,
            n_boot=n_boot,
            say=say,
            backbone=backbone,
            bank=bank,
        )
    return result


def _with_study(result: DemoResult, *, out_dir: Any, **kw: Any) -> DemoResult:
    """Run the audit, shortcut finder, test-time masking and PDF reports (timed)."""
    from dataclasses import replace

    from conceptlens._demo_study import run_study

    t0 = time.perf_counter()
    m = result.metrics.attrs
    found = run_study(
        cbm=result.model,
        scores=result.scores,
        splits=result.splits,
        meta={"preset": m["preset"], "n": m["n"]},
        out_dir=user_path(out_dir) if out_dir is not None else None,
        **kw,
    )
    timings = {**result.timings, "study": time.perf_counter() - t0}
    if out_dir is not None:
        atomic_write_text(user_path(out_dir) / "finding.txt", found["finding"] + "\n")
    return replace(result, study=found, timings=timings)


def format_summary(result: DemoResult) -> str:
    """The demo's summary table and top concepts as plain text."""
    m = result.metrics
    lines = [
        f"conceptlens demo: SynthDerm '{m.attrs['preset']}' (n={m.attrs['n']}, "
        f"seed={m.attrs['seed']}), backbone {m.attrs['backbone']}, bank {m.attrs['bank']}",
        "",
        f"{'model':<20}{'split':<24}{'accuracy':>22}{'balanced acc.':>22}{'macro AUROC':>22}",
    ]
    for model in m.model.values:
        for split in m.split.values:
            cells = []
            for metric in ("accuracy", "balanced_accuracy", "auroc"):
                sel = {"model": model, "split": split, "metric": metric}
                est, lo, hi = (float(m[v].sel(sel)) for v in ("estimate", "ci_low", "ci_high"))
                cells.append(f"{est:.3f} [{lo:.3f}, {hi:.3f}]")
            n = int(m.n_samples.sel(model=model, split=split))
            label = f"{split} (n={n})"
            lines.append(f"{model:<20}{label:<24}" + "".join(f"{c:>22}" for c in cells))
    lines += ["", "95% bootstrap confidence intervals (stratified, seeded).", ""]
    lines.append(
        "concepts with the largest weights per class (per standard deviation of the score):"
    )
    for cls, items in result.top_concepts.items():
        text = ", ".join(f"{c} ({w:+.2f})" for c, w in items) or "(none)"
        lines.append(f"  {cls}: {text}")
    return "\n".join(lines)


def _write_outputs(out: Path, result: DemoResult) -> None:
    from conceptlens.concepts import write_scores

    out.mkdir(parents=True, exist_ok=True)
    write_scores(result.scores, out / "scores.nc")
    with atomic_path(out / "metrics.nc") as tmp:
        result.metrics.to_netcdf(tmp)
    table: pd.DataFrame = result.metrics.to_dataframe().reset_index()
    atomic_write_text(out / "metrics.csv", table.to_csv(index=False))
    atomic_write_text(out / "summary.txt", format_summary(result) + "\n")
