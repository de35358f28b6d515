"""conceptlens: interpretable concept-bottleneck analysis of medical images.

The public API is re-exported here, grouped by stage of the pipeline
(data -> backbones -> concepts -> heads). Names are imported on first use, so
``import conceptlens`` stays fast and does not pull in torch or numba until needed;
the subpackages (``conceptlens.data``, ``.backbones``, ``.concepts``, ``.heads``) hold
the full API.

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
from typing import TYPE_CHECKING, Any

from conceptlens._version import __version__
from conceptlens.exceptions import (
    BackboneUnavailableError,
    BankError,
    CacheError,
    ConceptLensError,
    ConceptLensWarning,
    ConfigError,
    DataError,
    ImageDecodeError,
    IntegrityError,
    MissingDependencyError,
    MissingFileError,
    UnknownNameError,
)

_LAZY: dict[str, str] = {
    # data
    "ImageDataset": "conceptlens.data",
    "load_manifest": "conceptlens.data",
    "load_folder": "conceptlens.data",
    "load_npz": "conceptlens.data",
    "load_dicom": "conceptlens.data",
    "make_splits": "conceptlens.data",
    "SynthDerm": "conceptlens.synthderm",
    "write_synthderm": "conceptlens.synthderm",
    # backbones
    "Backbone": "conceptlens.backbones",
    "load_backbone": "conceptlens.backbones",
    "list_backbones": "conceptlens.backbones",
    # concept banks and scoring
    "ConceptBank": "conceptlens.concepts",
    "load_bank": "conceptlens.concepts",
    "list_banks": "conceptlens.concepts",
    "generate_bank": "conceptlens.concepts",
    "retrieve_concepts": "conceptlens.concepts",
    "filter_bank": "conceptlens.concepts",
    "select_concepts": "conceptlens.concepts",
    "score_concepts": "conceptlens.concepts",
    "embed_images": "conceptlens.concepts",
    "ConceptStandardizer": "conceptlens.concepts",
    # heads and metrics
    "ConceptBottleneckClassifier": "conceptlens.heads",
    "LinearProbe": "conceptlens.heads",
    "SparseLinearHead": "conceptlens.heads",
    "SparseLinearHeadCV": "conceptlens.heads",
    "classification_metrics": "conceptlens.heads",
    "save_head": "conceptlens.heads",
    "load_head": "conceptlens.heads",
    # end to end
    "run_demo": "conceptlens._demo",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from conceptlens._demo import run_demo
    from conceptlens.backbones import Backbone, list_backbones, load_backbone
    from conceptlens.concepts import (
        ConceptBank,
        ConceptStandardizer,
        embed_images,
        filter_bank,
        generate_bank,
        list_banks,
        load_bank,
        retrieve_concepts,
        score_concepts,
        select_concepts,
    )
    from conceptlens.data import (
        ImageDataset,
        load_dicom,
        load_folder,
        load_manifest,
        load_npz,
        make_splits,
    )
    from conceptlens.heads import (
        ConceptBottleneckClassifier,
        LinearProbe,
        SparseLinearHead,
        SparseLinearHeadCV,
        classification_metrics,
        load_head,
        save_head,
    )
    from conceptlens.synthderm import SynthDerm, write_synthderm


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conceptlens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = (
    "__version__",
    # data
    "ImageDataset",
    "load_manifest",
    "load_folder",
    "load_npz",
    "load_dicom",
    "make_splits",
    "SynthDerm",
    "write_synthderm",
    # backbones
    "Backbone",
    "load_backbone",
    "list_backbones",
    # concept banks and scoring
    "ConceptBank",
    "load_bank",
    "list_banks",
    "generate_bank",
    "retrieve_concepts",
    "filter_bank",
    "select_concepts",
    "score_concepts",
    "embed_images",
    "ConceptStandardizer",
    # heads and metrics
    "ConceptBottleneckClassifier",
    "LinearProbe",
    "SparseLinearHead",
    "SparseLinearHeadCV",
    "classification_metrics",
    "save_head",
    "load_head",
    # end to end
    "run_demo",
    # exceptions
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
