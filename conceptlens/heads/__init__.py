"""Concept-bottleneck heads: sparse elastic-net logistic heads, probes and metrics."""

from conceptlens.heads._cbm import ConceptBottleneckClassifier
from conceptlens.heads._cv import SparseLinearHeadCV
from conceptlens.heads._io import check_head_scores, load_head, save_head, used_in_fit
from conceptlens.heads._metrics import classification_metrics
from conceptlens.heads._path import RegularizationPath
from conceptlens.heads._probe import LinearProbe
from conceptlens.heads._sparse import SparseLinearHead, fit_path

__all__ = [
    # estimators
    "ConceptBottleneckClassifier",
    "LinearProbe",
    "SparseLinearHead",
    "SparseLinearHeadCV",
    "fit_path",
    "RegularizationPath",
    # metrics
    "classification_metrics",
    # persistence
    "check_head_scores",
    "load_head",
    "save_head",
    "used_in_fit",
]
