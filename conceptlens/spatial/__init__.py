"""Spatial concept reasoning: patch concept maps, localisation metrics, prototype atlas,
prototype classifier and region feedback (similarity reasoning as in CSR, CVPR 2025)."""

from conceptlens.spatial._localize import (
    mask_iou,
    normalize_maps,
    pointing_game,
    scaled_tolerance,
)
from conceptlens.spatial._maps import concept_directions, concept_maps, upsample

__all__ = [
    # concept maps
    "concept_maps",
    "concept_directions",
    "upsample",
    # localisation
    "pointing_game",
    "mask_iou",
    "normalize_maps",
    "scaled_tolerance",
]
