"""Shared fixtures: offline by default, seeded randomness, conceptlens warnings as errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings

# Deterministic property tests: the same examples on every run and machine (CI never
# flakes); set CONCEPTLENS_HYPOTHESIS=explore to search afresh locally.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("CONCEPTLENS_HYPOTHESIS", "ci"))

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
