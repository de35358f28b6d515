"""Real inputs for the plot tests: SynthDerm ground-truth concepts + noise, a fitted head."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.studies._synth import noisy_scores, synthderm_batch, synthderm_config

TRAIN_SITES = ["site_a", "site_b"]


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.fixture(scope="session")
def batch():
    return synthderm_batch(synthderm_config("confounded"), 600, seed=0)


@pytest.fixture(scope="session")
def scores(batch):
    return noisy_scores(batch)


@pytest.fixture(scope="session")
def cbm(scores):
    from conceptlens.heads import ConceptBottleneckClassifier

    train = np.isin(scores.site.values, TRAIN_SITES)
    return ConceptBottleneckClassifier(C=0.5).fit(scores[train], scores.label.values[train])


@pytest.fixture(scope="session")
def audit_ds(scores, cbm):
    from conceptlens.studies import audit

    return audit({"cbm": cbm}, scores, split="site", groups=["skin_tone"], n_boot=50)
