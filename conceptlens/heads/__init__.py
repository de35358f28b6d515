"""Concept-bottleneck heads: sparse elastic-net logistic heads, probes and metrics."""

from conceptlens.heads._estimators import (
    ConceptBottleneckClassifier,
    LinearProbe,
    SparseLinearHead,
    SparseLinearHeadCV,
    fit_path,
)
from conceptlens.heads._io import check_head_scores, load_head, save_head
from conceptlens.heads._metrics import classification_metrics

__all__ = [
    # estimators
    "ConceptBottleneckClassifier",
    "LinearProbe",
    "SparseLinearHead",
    "SparseLinearHeadCV",
    "fit_path",
    # metrics
    "classification_metrics",
    # persistence
    "check_head_scores",
    "load_head",
    "save_head",
]
