"""Shared spatial fixtures: synthderm-lit + a SynthDerm sample, tiny random ViTs."""

from __future__ import annotations

import pytest

import conceptlens as cl
from tests.backbones._tiny import TIMM_TOK, VIT_AVG, tiny_backbone, tiny_bank


@pytest.fixture(scope="session")
def lit():
    from conceptlens.backbones import load_backbone

    return load_backbone("synthderm-lit", device="cpu")


@pytest.fixture(scope="session")
def derm():
    return cl.SynthDerm("confounded").generate(48, seed=3)


@pytest.fixture(scope="session", params=["openclip-vit", "timm-vit"])
def tiny(request, tmp_path_factory):
    cfg = VIT_AVG if request.param == "openclip-vit" else TIMM_TOK
    return tiny_backbone(tmp_path_factory.mktemp(request.param), cfg, device="cpu")


@pytest.fixture(scope="session")
def toy_bank():
    return tiny_bank()
