"""SynthDerm ground truth vs. its concept bank, and the Bayes-optimal accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import conceptlens
from conceptlens.synthderm import (
    SYNTHDERM_CLASSES,
    SYNTHDERM_CONCEPTS,
    SynthDermConfig,
)
from conceptlens.synthderm._generator import (
    _prob_tables,
    _sample_latents,
    synthderm_bayes_accuracy,
)
from conceptlens.synthderm._vocab import CONCEPT_PHRASES, PARAPHRASES

BANK = Path(conceptlens.__file__).parents[1] / "concept_banks" / "synthderm.yaml"


@pytest.fixture(scope="module")
def bank() -> dict:
    return yaml.safe_load(BANK.read_text())


def test_bank_matches_generator(bank):
    assert bank["schema_version"] == 1 and bank["id"] == "synthderm"
    assert bank["classes"] == list(SYNTHDERM_CLASSES)
    assert bank["reference_prompts"] == ["a dermoscopy image of skin"]
    concepts = bank["concepts"]
    assert [(c["name"], c["group"]) for c in concepts] == list(SYNTHDERM_CONCEPTS)
    table = SynthDermConfig.from_preset("iid").concept_prob_table("site_a")
    for c in concepts:
        name = c["name"]
        assert 2 <= len(c["prompts"]) <= 3
        # prompts use caption wording, never the held-out paraphrases
        assert set(c["prompts"]) <= set(CONCEPT_PHRASES[name])
        assert not set(c["prompts"]) & set(PARAPHRASES[name])
        assert c["question"].endswith("?")
        assert c["provenance"]["kind"] == "curated"
        cites = c["provenance"]["citation"]
        for key in [cites] if isinstance(cites, str) else cites:
            assert key in bank["citations"]
        p = table[name]
        for cls, prior in c["classes"].items():
            others = [p[o] for o in SYNTHDERM_CLASSES if o != cls]
            expected = 1 if p[cls] > max(others) else -1 if p[cls] < min(others) else 0
            assert prior == expected, (name, cls)


def test_bank_loads_with_the_bank_loader():
    from conceptlens.concepts import load_bank

    bank = load_bank("synthderm")
    assert bank.names == tuple(n for n, _ in SYNTHDERM_CONCEPTS)


def test_bayes_accuracy_matches_independent_naive_bayes():
    """The MC Bayes rule equals sklearn's BernoulliNB fitted on a large sample (iid preset:
    the same table at every site, so the posterior is exactly naive Bayes)."""
    from sklearn.naive_bayes import BernoulliNB

    cfg = SynthDermConfig.from_preset("iid")
    tables = _prob_tables(cfg)
    _, y, _, c = _sample_latents(cfg, np.random.default_rng(5), 200_000, tables)
    nb = BernoulliNB(alpha=1e-9).fit(c[:150_000], y[:150_000])
    nb_acc = float(np.mean(nb.predict(c[150_000:]) == y[150_000:]))
    bayes = synthderm_bayes_accuracy("iid", n=50_000, seed=6)
    assert abs(nb_acc - bayes) < 0.01
    assert 0.8 < bayes < 0.97  # concepts predict the class well but not perfectly


def test_logistic_regression_on_concepts_reaches_bayes():
    from sklearn.linear_model import LogisticRegression

    cfg = SynthDermConfig.from_preset("iid")
    tables = _prob_tables(cfg)
    _, y, _, c = _sample_latents(cfg, np.random.default_rng(8), 30_000, tables)
    clf = LogisticRegression(max_iter=1000).fit(c[:20_000], y[:20_000])
    acc = float(np.mean(clf.predict(c[20_000:]) == y[20_000:]))
    bayes = synthderm_bayes_accuracy("iid", n=100_000, seed=9)
    # 10k test samples: standard error ~0.003; a linear model is Bayes-optimal here
    assert bayes - 0.015 < acc <= bayes + 0.01


def test_bayes_accuracy_per_site_and_mixture():
    mixture = synthderm_bayes_accuracy("confounded", n=40_000, seed=1)
    train = synthderm_bayes_accuracy("confounded", n=40_000, seed=1, site="site_a")
    held = synthderm_bayes_accuracy("confounded", n=40_000, seed=1, site="site_c")
    iid = synthderm_bayes_accuracy("iid", n=40_000, seed=1)
    # the planted shortcut makes concepts (incl. artifacts) more predictive at site_a
    assert train > iid + 0.02
    assert 0.8 < held < train
    assert min(train, held) - 0.01 < mixture < max(train, held) + 0.01
