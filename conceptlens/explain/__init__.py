"""Explanations of concept-bottleneck predictions: exact concept contributions (linear
SHAP), shap adapter, importance, faithfulness checks and pixel attributions."""

from conceptlens.explain._faithfulness import (
    deletion_insertion,
    effective_concepts,
    random_words_control,
)
from conceptlens.explain._linear import (
    concept_matrix,
    contributions,
    global_importance,
    head_parameters,
    standardized_weights,
    top_concepts,
)
from conceptlens.explain._shap import to_shap

# torch (pixel-level module) and captum are imported only when these are first used
_LAZY = {
    "ConceptModelModule": "conceptlens.explain._pixel",
    "concept_model_module": "conceptlens.explain._pixel",
    "images_to_pixels": "conceptlens.explain._pixel",
    "PixelIntegratedGradients": "conceptlens.explain._captum",
    "PatchGradCAM": "conceptlens.explain._captum",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'conceptlens.explain' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    # concept contributions
    "contributions",
    "head_parameters",
    "concept_matrix",
    # importance
    "global_importance",
    "standardized_weights",
    "top_concepts",
    # faithfulness
    "deletion_insertion",
    "effective_concepts",
    "random_words_control",
    # adapters
    "to_shap",
    # pixel level
    "ConceptModelModule",
    "concept_model_module",
    "images_to_pixels",
    "PixelIntegratedGradients",
    "PatchGradCAM",
]
