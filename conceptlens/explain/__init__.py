"""Explanations of concept-bottleneck predictions: exact concept contributions (linear
SHAP), shap adapter, importance, faithfulness checks and pixel attributions."""

from conceptlens.explain._linear import (
    concept_matrix,
    contributions,
    global_importance,
    head_parameters,
    standardized_weights,
    top_concepts,
)
from conceptlens.explain._shap import to_shap

__all__ = [
    # concept contributions
    "contributions",
    "head_parameters",
    "concept_matrix",
    # importance
    "global_importance",
    "standardized_weights",
    "top_concepts",
    # adapters
    "to_shap",
]
