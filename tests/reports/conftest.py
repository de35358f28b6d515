"""A small audited study on SynthDerm ground-truth concepts + noise, for the report tests."""

from __future__ import annotations

import numpy as np
import pytest

from tests.studies._synth import noisy_scores, synthderm_batch, synthderm_config

TRAIN_SITES = ["site_a", "site_b"]


@pytest.fixture(scope="session")
def study():
    from conceptlens.heads import ConceptBottleneckClassifier, LinearProbe
    from conceptlens.studies import audit, find_shortcuts

    batch = synthderm_batch(synthderm_config("confounded"), 600, seed=0)
    scores = noisy_scores(batch)
    train = np.isin(scores.site.values, TRAIN_SITES)
    y = scores.label.values
    cbm = ConceptBottleneckClassifier(C=0.5).fit(scores[train], y[train])
    probe = LinearProbe(C=0.1).fit(scores.values[train], y[train])
    res = audit({"cbm": cbm, "probe": probe}, scores, inputs={"probe": scores.values},
                split="site", groups=["skin_tone"], n_boot=100)  # fmt: skip
    return {
        "batch": batch,
        "scores": scores,
        "train": train,
        "cbm": cbm,
        "audit": res,
        "shortcuts": find_shortcuts(cbm, scores),
    }
