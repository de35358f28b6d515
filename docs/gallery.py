"""The figure gallery of the documentation site: every function of ``conceptlens.plot``,
drawn at build time on real outputs of the embedded default.

:func:`inputs` runs a small version of the demo (800 SynthDerm ``confounded`` images, the
``synthderm-lit`` backbone, the SynthDerm concept bank, a concept head and a linear probe,
an audit, an intervention curve, a masking study, the bank quality report, concept maps);
each entry of :data:`FIGURES` draws one plot function on them. docs/hooks.py shows the
source of each entry next to its figure, so what the page shows is what ran.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import conceptlens as cl
from conceptlens import plot


def inputs(cache: Path) -> dict[str, Any]:
    """The data every figure draws on; embeddings go through the cache at ``cache``."""
    from conceptlens.concepts import bank_quality
    from conceptlens.heads import ConceptBottleneckClassifier, LinearProbe
    from conceptlens.masking import intervention_curve
    from conceptlens.spatial import concept_maps
    from conceptlens.studies import audit, masking_study

    # the quickstart notebook's images: executed first, it leaves their embeddings in the cache
    batch = cl.SynthDerm("confounded").generate(800, seed=0)
    dataset = batch.to_dataset()
    backbone = cl.load_backbone("synthderm-lit")
    bank = cl.load_bank("synthderm")
    scores = cl.score_concepts(backbone, dataset, bank, mode="relative", cache=cache)
    embeddings = cl.embed_images(backbone, dataset, cache=cache)
    labels = scores.label.values
    site = scores.site.values
    rng = np.random.default_rng(0)
    train = (site != "site_c") & (rng.random(len(site)) < 0.7)
    test = ~train
    cbm = ConceptBottleneckClassifier(max_concepts_per_class=10, random_state=0)
    cbm.fit(scores[train], labels[train])
    probe = LinearProbe(C=0.1).fit(embeddings[train], labels[train])
    res = audit(
        {"concept_head": cbm, "linear_probe": probe},
        scores[test],
        inputs={"linear_probe": embeddings[test]},
        split="site",
        groups=["skin_tone"],
        n_boot=200,
        seed=0,
    )
    heldout = scores[site == "site_c"]
    curve = intervention_curve(
        cbm, heldout, heldout.label.values, reference_scores=scores[train], n_random=10
    )
    small = cl.SynthDerm("confounded").generate(240, seed=1).to_dataset()
    grid = masking_study(
        small,
        roi="lesion_mask",
        conditions=("full", "no_roi", "only_roi"),
        models=("concept_head",),
        n_boot=100,
        cache=cache,
    )
    quality = bank_quality(bank, backbone, dataset, cache=cache, n_random=16)
    case = int(np.flatnonzero((site == "site_c") & (labels == "melanoma"))[0])
    image = batch.images[case]
    maps = concept_maps(backbone, image[None], bank, mode="relative", resize=True)
    return {
        "batch": batch,
        "scores": scores,
        "cbm": cbm,
        "audit": res,
        "curve": curve,
        "grid": grid,
        "quality": quality,
        "case": case,
        "image": image,
        "maps": maps,
    }


# --------------------------------------------------------------------------- the figures
# One function per plot function, named after it; its body is shown on the page.


def image_gallery(d: dict[str, Any]) -> Any:
    images = d["batch"].images[:6]
    titles = [str(label) for label in d["batch"].labels[:6]]
    return plot.image_gallery(images, titles=titles, ncols=6)


def synthderm_montage(d: dict[str, Any]) -> Any:
    return plot.synthderm_montage(d["batch"], n=8, ncols=4, groups=["artifact"])


def concept_distributions(d: dict[str, Any]) -> Any:
    return plot.concept_distributions(d["scores"], ["purple_ink", "ruler"], by="site")


def head_weights(d: dict[str, Any]) -> Any:
    return plot.head_weights(d["cbm"], k=10)


def contribution_waterfall(d: dict[str, Any]) -> Any:
    from conceptlens.explain import contributions

    c = contributions(d["cbm"], d["scores"][[d["case"]]])
    return plot.contribution_waterfall(c, sample=0, cls="melanoma")


def metric_table(d: dict[str, Any]) -> Any:
    return plot.metric_table(d["audit"], group="all")


def metric_forest(d: dict[str, Any]) -> Any:
    return plot.metric_forest(d["audit"], "accuracy")


def intervention_curves(d: dict[str, Any]) -> Any:
    return plot.intervention_curves({"site_c": d["curve"]})


def masking_grid(d: dict[str, Any]) -> Any:
    return plot.masking_grid(d["grid"], model="concept_head")


def bank_quality_bars(d: dict[str, Any]) -> Any:
    return plot.bank_quality_bars(d["quality"], metric="auroc")


def plot_concept_maps(d: dict[str, Any]) -> Any:
    concepts = ["purple_ink", "ruler", "blue_white_veil"]
    return plot.plot_concept_maps(d["image"], d["maps"], concepts=concepts)


FIGURES: dict[str, Callable[[dict[str, Any]], Any]] = {
    f.__name__: f
    for f in (
        image_gallery,
        synthderm_montage,
        concept_distributions,
        head_weights,
        contribution_waterfall,
        metric_table,
        metric_forest,
        intervention_curves,
        masking_grid,
        bank_quality_bars,
        plot_concept_maps,
    )
}
