"""SynthDerm test data for the studies: ground-truth concepts plus noise as scores.

Presets and plantings are built only here (through the public ``conceptlens.SynthDerm``
and its config's ``with_artifact_probs``) so the tests are easy to adapt.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import conceptlens as cl


def synthderm_config(preset: str, plant: list[dict] | None = None):
    """A preset's config with extra shortcuts: each dict is ``with_artifact_probs`` kwargs."""
    cfg = cl.SynthDerm(preset).config
    for change in plant or []:
        cfg = cfg.with_artifact_probs(**change)
    return cfg


def synthderm_batch(config, n: int, seed: int = 0, image_size: int = 32):
    return cl.SynthDerm(config, image_size=image_size).generate(n, seed=seed)


def noisy_scores(batch, noise: float = 0.5, seed: int = 0) -> xr.DataArray:
    """Ground-truth concepts + Gaussian noise, labelled like ``score_concepts`` output."""
    rng = np.random.default_rng(seed)
    x = batch.concepts.astype(float) + rng.normal(0.0, noise, batch.concepts.shape)
    names = list(batch.concept_names)
    coords = {
        "sample": list(batch.ids),
        "concept": names,
        "concept_group": ("concept", list(batch.concept_groups)),
        "label": ("sample", np.asarray(batch.class_names)[batch.labels]),
        "site": ("sample", batch.site.astype(str)),
        "skin_tone": ("sample", batch.skin_tone),
    }
    for j, c in enumerate(names):
        coords[c] = ("sample", batch.concepts[:, j].astype(np.int64))
    return xr.DataArray(
        x, dims=("sample", "concept"), coords=coords, name="concept_score",
        attrs={"backbone_fingerprint": "ground-truth+noise", "bank_fingerprint": "synthderm"},
    )  # fmt: skip
