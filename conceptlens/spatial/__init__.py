"""Spatial concept reasoning: patch concept maps, localisation metrics, prototype atlas,
prototype classifier and region feedback (similarity reasoning as in CSR, CVPR 2025), and a
mask-supervised pixel-level concept segmenter."""

from conceptlens.spatial._atlas import (
    PrototypeAtlas,
    build_atlas,
    prototypes_on_masks,
    unit_patches,
)
from conceptlens.spatial._classifier import PrototypeClassifier, refinement_report
from conceptlens.spatial._feedback import importance_map, pool_to_grid, region_feedback
from conceptlens.spatial._guided import guided_filter, joint_bilateral_upsample
from conceptlens.spatial._interactive import RegionSession
from conceptlens.spatial._io import (
    load_atlas,
    load_prototype_classifier,
    save_atlas,
    save_prototype_classifier,
)
from conceptlens.spatial._localize import (
    mask_iou,
    normalize_maps,
    patch_masks,
    pointing_game,
    resolution_ceiling,
    scaled_tolerance,
)
from conceptlens.spatial._maps import concept_directions, concept_maps, patch_grid, upsample
from conceptlens.spatial._pixel import pixel_feature_names, pixel_features
from conceptlens.spatial._segment import ConceptSegmenter

__all__ = [
    # concept maps
    "concept_maps",
    "concept_directions",
    "patch_grid",
    "upsample",
    "guided_filter",
    "joint_bilateral_upsample",
    # localisation
    "pointing_game",
    "mask_iou",
    "normalize_maps",
    "scaled_tolerance",
    "resolution_ceiling",
    "patch_masks",
    # prototype atlas
    "PrototypeAtlas",
    "build_atlas",
    "unit_patches",
    "prototypes_on_masks",
    # prototype classifier and refinement
    "PrototypeClassifier",
    "refinement_report",
    # region feedback
    "importance_map",
    "pool_to_grid",
    "region_feedback",
    # saving and loading
    "save_atlas",
    "load_atlas",
    "save_prototype_classifier",
    "load_prototype_classifier",
    # interaction
    "RegionSession",
    # mask-supervised pixel segmentation
    "ConceptSegmenter",
    "pixel_features",
    "pixel_feature_names",
]
