"""conceptlens: interpretable concept-bottleneck analysis of medical images.

The public API is re-exported here, grouped by stage of the pipeline
(data -> synthderm -> backbones -> concepts -> heads -> explain, masking, spatial,
studies, reports). Names are imported on first use, so ``import conceptlens`` stays fast
and does not pull in torch or numba until needed; the subpackages (``conceptlens.data``,
``.synthderm``, ``.backbones``, ``.concepts``, ``.heads``, ``.explain``, ``.masking``,
``.spatial``, ``.studies``, ``.plot``, ``.reports``) hold the full API. See
docs/architecture.md for where each capability lives.

Examples
--------
>>> import conceptlens as cl
>>> "synthderm-lit" in cl.list_backbones()
True
>>> cl.load_bank("synthderm").id
'synthderm'
"""

from __future__ import annotations

import importlib
from typing import Any

from conceptlens import exceptions as _exceptions
from conceptlens._version import __version__ as __version__

# The public API: subpackage -> names re-exported here, grouped by stage of the pipeline.
# This table is the one source: ``__all__``, the lazy ``__getattr__`` and ``__dir__`` are
# built from it, and ``__init__.pyi`` (for type checkers and IDEs) is generated from it and
# checked by tests/test_api.py.
_API: dict[str, tuple[str, ...]] = {
    "conceptlens.data": (
        "ImageDataset",
        "load_manifest",
        "load_folder",
        "load_npz",
        "load_dicom",
        "make_splits",
    ),
    "conceptlens.synthderm": ("SynthDerm", "SynthDermConfig", "write_synthderm"),
    "conceptlens.backbones": (
        "Backbone",
        "load_backbone",
        "list_backbones",
        "add_backbone_config",
    ),
    "conceptlens.concepts": (
        "ConceptBank",
        "load_bank",
        "list_banks",
        "generate_bank",
        "retrieve_concepts",
        "filter_bank",
        "select_concepts",
        "score_concepts",
        "embed_images",
        "write_scores",
        "ConceptStandardizer",
    ),
    "conceptlens.heads": (
        "ConceptBottleneckClassifier",
        "LinearProbe",
        "SparseLinearHead",
        "SparseLinearHeadCV",
        "classification_metrics",
        "save_head",
        "load_head",
    ),
    "conceptlens.explain": ("contributions", "to_shap", "global_importance", "top_concepts"),
    "conceptlens.masking": ("intervene", "intervention_curve", "TestTimeMasking"),
    "conceptlens.spatial": ("concept_maps", "build_atlas", "PrototypeClassifier"),
    "conceptlens.studies": ("audit", "concept_audit", "find_shortcuts", "masking_study"),
    "conceptlens.reports": ("case_report", "audit_report"),
    "conceptlens._demo": ("run_demo",),
    "conceptlens._io": ("cache_root",),
}
_EXCEPTIONS = (
    "ConceptLensError",
    "DataError",
    "ImageDecodeError",
    "MissingFileError",
    "ConfigError",
    "UnknownNameError",
    "BankError",
    "IntegrityError",
    "CacheError",
    "BackboneUnavailableError",
    "MissingDependencyError",
    "ConceptLensWarning",
)
_LAZY: dict[str, str] = {name: module for module, names in _API.items() for name in names}
# the exceptions are light: imported now
globals().update({name: getattr(_exceptions, name) for name in _EXCEPTIONS})

__all__ = ("__version__", *_LAZY, *_EXCEPTIONS)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conceptlens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
