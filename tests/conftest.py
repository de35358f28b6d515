"""Shared fixtures: offline by default, seeded randomness, conceptlens warnings as errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CONCEPTLENS_QUIET", "1")


@pytest.fixture
def global_random_seed() -> int:
    """The seed every randomised test uses (change with CONCEPTLENS_TEST_SEED)."""
    return int(os.environ.get("CONCEPTLENS_TEST_SEED", "0"))


@pytest.fixture
def rng(global_random_seed: int) -> np.random.Generator:
    return np.random.default_rng(global_random_seed)
