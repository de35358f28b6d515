"""MONET-style presence scores: a two-way softmax of concept vs reference prompts."""

import numpy as np
import pytest

from conceptlens.concepts import score_concepts
from conceptlens.exceptions import ConfigError
from tests.backbones._tiny import VIT_AVG, dataset, tiny_backbone, tiny_bank


@pytest.fixture(scope="module")
def bb(tmp_path_factory):
    return tiny_backbone(tmp_path_factory.mktemp("bb"), VIT_AVG, batch_size=4)


def _dense_softmax(bb, ds, bank, temperature):
    """Independent formula: cosines as dense numpy products, then an explicit softmax."""
    img = bb.encode_images(ds, normalize=False).astype(np.float64)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    templates = list(bank.templates)

    def ensemble(prompts):
        flat = bb.encode_text([t.format(p) for p in prompts for t in templates], normalize=False)
        flat = flat.astype(np.float64)
        flat /= np.linalg.norm(flat, axis=1, keepdims=True)
        mean = flat.mean(axis=0)
        return mean / np.linalg.norm(mean)

    text = np.stack([ensemble(c.prompts) for c in bank.concepts])
    ref = ensemble(bank.reference_prompts)
    logits = np.stack(
        [img @ text.T / temperature, np.repeat((img @ ref)[:, None], len(text), 1) / temperature]
    )  # (2, n, c): concept vs reference
    logits -= logits.max(axis=0, keepdims=True)
    e = np.exp(logits)
    return e[0] / e.sum(axis=0)


@pytest.mark.parametrize("temperature", [0.01, 0.1, 1.0])
def test_presence_equals_two_way_softmax(bb, temperature):
    ds = dataset(8)
    bank = tiny_bank(templates=("{}", "a photo of {}"))
    got = score_concepts(
        bb, ds, bank, mode="presence", temperature=temperature, show_progress=False
    )
    np.testing.assert_allclose(got.values, _dense_softmax(bb, ds, bank, temperature), atol=1e-5)
    assert got.dtype == np.float32 and ((got.values > 0) & (got.values < 1)).all()
    assert got.attrs["score_mode"] == "presence" and got.attrs["temperature"] == temperature
    assert got.attrs["reference_prompts"] != "[]"
    # monotone in the relative score, and 0.5 exactly where concept = reference
    rel = score_concepts(bb, ds, bank, mode="relative", show_progress=False)
    np.testing.assert_allclose(
        got.values, 1 / (1 + np.exp(-rel.values.astype(np.float64) / temperature)), atol=1e-5
    )


def test_presence_needs_reference_and_positive_temperature(bb):
    ds = dataset(3)
    with pytest.raises(ConfigError, match="reference_prompts"):
        score_concepts(bb, ds, tiny_bank(reference=False), mode="presence")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="temperature"):
            score_concepts(bb, ds, tiny_bank(), mode="presence", temperature=bad)
