"""Concept interventions and training-free test-time concept masking."""

from conceptlens.masking._intervene import (
    concept_annotations,
    intervene,
    intervention_curve,
    reference_levels,
)
from conceptlens.masking._ttm import (
    MaskingAction,
    RuleContext,
    TestTimeMasking,
    greedy_rule,
    recentre_rule,
)

__all__ = [
    # interventions
    "intervene",
    "intervention_curve",
    "reference_levels",
    "concept_annotations",
    # test-time masking
    "TestTimeMasking",
    "MaskingAction",
    "RuleContext",
    "greedy_rule",
    "recentre_rule",
]
