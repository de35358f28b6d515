"""Pixel attributions: the differentiable pipeline equals score_concepts + the head;
Integrated Gradients completeness; Grad-CAM on ViT patch tokens (open_clip and timm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlens.concepts import score_concepts
from conceptlens.exceptions import DataError
from conceptlens.explain import (
    PatchGradCAM,
    PixelIntegratedGradients,
    concept_model_module,
    images_to_pixels,
)
from conceptlens.heads import ConceptBottleneckClassifier
from tests.backbones._tiny import TIMM_TOK, VIT_TOK, dataset, tiny_backbone, tiny_bank


@pytest.fixture(scope="module", params=["openclip_vit", "timm_vit"])
def setup(request, tmp_path_factory):
    cfg = VIT_TOK if request.param == "openclip_vit" else TIMM_TOK
    bb = tiny_backbone(tmp_path_factory.mktemp(request.param), cfg, device="cpu")
    bank = tiny_bank()
    ds = dataset(24, size=(bb.image_size, bb.image_size))
    scores = score_concepts(bb, ds, bank, mode="relative")
    # labels driven by the first concept's score so the head has real weights
    first = scores.isel(concept=0).values
    y = np.where(first > np.median(first), "malignant", "benign")
    cbm = ConceptBottleneckClassifier(C=10.0, l1_ratio=0.0).fit(scores, y)
    module = concept_model_module(bb, bank, cbm)
    return bb, ds, scores, cbm, module


def test_module_equals_scoring_and_head(setup):
    bb, ds, scores, cbm, module = setup
    px = images_to_pixels(bb, ds)
    with torch.no_grad():
        s = module.concept_scores(px).numpy()
        logits = module(px).numpy()
    np.testing.assert_allclose(s, scores.values, atol=2e-5)
    df = cbm.decision_function(scores)  # labelled in: (sample, class), binary as (-z, z)
    assert list(df["class"].values) == module.classes
    np.testing.assert_allclose(logits, df.values, atol=1e-4)
    np.testing.assert_allclose(logits[:, 0], -logits[:, 1], atol=1e-6)
    assert module.concepts == list(scores.concept.values)


@pytest.mark.parametrize("target,of", [("malignant", "class"), ("red_dots", "concept")])
def test_integrated_gradients_completeness(setup, target, of):
    bb, ds, _, _, module = setup
    px = images_to_pixels(bb, ds)[:3]
    a = PixelIntegratedGradients(module, n_steps=64, internal_batch_size=32).attribute(
        px, target, of=of
    )
    assert a.dims == ("sample", "channel", "y", "x") and a.shape == tuple(px.shape)
    total = a.sum(("channel", "y", "x")).values
    diff = (a.output - a.baseline_output).values
    # completeness (Sundararajan et al. 2017): sum of attributions = F(x) - F(baseline),
    # up to the path-integral discretisation; stated tolerance 1 % of |diff| + 1e-4
    np.testing.assert_allclose(total, diff, rtol=1e-2, atol=1e-4)
    np.testing.assert_allclose(a.convergence_delta.values, total - diff, atol=1e-5)
    assert np.abs(diff).max() > 1e-4  # the check is not vacuous


def test_internal_batch_size_does_not_change_the_result(setup):
    bb, ds, _, _, module = setup
    px = images_to_pixels(bb, ds)[:2]
    a = PixelIntegratedGradients(module, n_steps=16, internal_batch_size=4).attribute(px, 1)
    b = PixelIntegratedGradients(module, n_steps=16, internal_batch_size=32).attribute(px, 1)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-4, atol=1e-7)


def test_gradcam_on_patch_tokens(setup):
    bb, ds, _, _, module = setup
    px = images_to_pixels(bb, ds)[:2]
    cam = PatchGradCAM(module, relu=False).attribute(px, "ruler", of="concept")
    assert cam.dims == ("sample", "y", "x")
    assert cam.shape == (2, bb.image_size, bb.image_size)
    assert np.isfinite(cam.values).all() and np.abs(cam.values).max() > 0
    gh, gw = cam.attrs["grid"]
    assert gh * gw > 1
    # the hook is removed afterwards: the module gives the same scores as before
    with torch.no_grad():
        before = module.concept_scores(px)
    PatchGradCAM(module).attribute(px, 0)
    with torch.no_grad():
        torch.testing.assert_close(module.concept_scores(px), before)


def test_gradcam_map_follows_the_grid_of_the_token_gradients(setup):
    """Reference: Grad-CAM computed by hand from the block output and its gradient."""
    bb, ds, _, _, module = setup
    px = images_to_pixels(bb, ds)[:1]
    cam = PatchGradCAM(module, relu=False).attribute(px, "red_dots", of="concept")
    visual = module.embedder.model.visual
    block = (
        visual.trunk.blocks[-1] if hasattr(visual, "trunk") else visual.transformer.resblocks[-1]
    )
    store = {}

    def hook(_m, args):
        tokens = args[0].detach().requires_grad_(True)
        store["tokens"] = tokens
        return (tokens, *args[1:])

    h = block.register_forward_pre_hook(hook)
    try:
        module.concept_scores(px)[0, 0].backward()
    finally:
        h.remove()
    tok, grad = store["tokens"], store["tokens"].grad
    gh, gw = cam.attrs["grid"]
    n_prefix = tok.shape[1] - gh * gw
    tok, grad = tok[0, n_prefix:], grad[0, n_prefix:]
    weights = grad.mean(dim=0)  # mean gradient per channel over the grid
    ref = (tok * weights).sum(dim=1).reshape(1, 1, gh, gw)
    ref = torch.nn.functional.interpolate(ref, size=px.shape[-2:], mode="bilinear")
    np.testing.assert_allclose(cam.values[0], ref[0, 0].detach().numpy(), rtol=1e-4, atol=1e-7)


def test_bad_targets_and_images(setup):
    bb, ds, _, _, module = setup
    px = images_to_pixels(bb, ds)[:1]
    with pytest.raises(DataError, match="unknown concept"):
        PixelIntegratedGradients(module).attribute(px, "veil", of="concept")
    with pytest.raises(DataError, match="shape"):
        PixelIntegratedGradients(module).attribute(px[:, :, :8, :8], 0)
    bad = px.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        PatchGradCAM(module).attribute(bad, 0)


@pytest.mark.slow
def test_synthderm_lit_pipeline_and_gradcam_grid():
    import conceptlens as cl

    bb = cl.load_backbone("synthderm-lit", device="cpu")
    batch = cl.SynthDerm("confounded").generate(40, seed=3)
    scores = cl.score_concepts(bb, batch.to_dataset(), "synthderm", mode="relative")
    y = np.asarray(scores["label"].values)
    cbm = ConceptBottleneckClassifier(C=0.1).fit(scores, y)
    module = concept_model_module(bb, "synthderm", cbm)
    px = images_to_pixels(bb, batch.images)
    with torch.no_grad():
        np.testing.assert_allclose(module.concept_scores(px[:8]).numpy(), scores.values[:8],
                                   atol=1e-5)  # fmt: skip
        np.testing.assert_allclose(module(px[:8]).numpy(), cbm.decision_function(scores[:8]),
                                   atol=1e-4)  # fmt: skip
    a = PixelIntegratedGradients(module, n_steps=64).attribute(px[:2], "ruler", of="concept")
    total = a.sum(("channel", "y", "x")).values
    np.testing.assert_allclose(total, (a.output - a.baseline_output).values, rtol=1e-2, atol=1e-4)
    cam = PatchGradCAM(module).attribute(px[:2], str(cbm.classes_[0]))
    assert cam.attrs["grid"] == [12, 12] and cam.shape == (2, 96, 96)


def test_an_integer_target_that_is_also_a_class_name_is_ambiguous():
    from types import SimpleNamespace

    from conceptlens.explain._captum import _target_index

    # a head fitted on labels 1 and 2: target=1 meant column 1, the class '2'
    module = SimpleNamespace(classes=["1", "2"], concepts=["veil", "dots"], concept_scores=None)
    with pytest.raises(DataError, match=r"target 1 is ambiguous: the class named '1' is column 0"):
        _target_index(module, 1, "class")
    assert _target_index(module, "2", "class")[1] == 1
    assert _target_index(module, 0, "class")[1] == 0  # '0' names no class: an index
    with pytest.raises(DataError, match="out of range for 2 concepts"):
        _target_index(module, 5, "concept")
