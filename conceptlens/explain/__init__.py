"""Explanations of concept-bottleneck predictions: exact concept contributions (linear
SHAP), shap adapter, importance, faithfulness checks and pixel attributions."""

from conceptlens.explain._faithfulness import (
    RANDOM_WORDS,
    deletion_insertion,
    effective_concepts,
    random_words_bank,
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
from conceptlens.explain._pixel import (
    ConceptModelModule,
    concept_model_module,
    images_to_pixels,
)
from conceptlens.explain._shap import to_shap

# captum is imported only when a pixel attribution class is used
_LAZY = {"PixelIntegratedGradients", "PatchGradCAM"}


def __getattr__(name: str):
    if name in _LAZY:
        from conceptlens.explain import _captum

        return getattr(_captum, name)
    raise AttributeError(f"module 'conceptlens.explain' has no attribute {name!r}")


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
    "random_words_bank",
    "random_words_control",
    "RANDOM_WORDS",
    # adapters
    "to_shap",
    # pixel level
    "ConceptModelModule",
    "concept_model_module",
    "images_to_pixels",
    "PixelIntegratedGradients",
    "PatchGradCAM",
]
