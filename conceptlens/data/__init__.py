"""conceptlens.data: image datasets, loaders, public-dataset adapters and splits.

SynthDerm, the embedded benchmark, lives in :mod:`conceptlens.synthderm`; its names are
still reachable here (``conceptlens.data.SynthDerm``) with a ``FutureWarning``.
"""

from typing import Any

from conceptlens.data._adapters import (
    CHESTXRAY14_LABELS,
    CHEXPERT_LABELS,
    HAM10000_CLASSES,
    load_chestxray14,
    load_chexpert,
    load_fitzpatrick17k,
    load_ham10000,
    load_isic,
)
from conceptlens.data._dataset import ImageDataset, Sample, SkippedSample
from conceptlens.data._dicom import (
    DICOM_METADATA_TAGS,
    DicomOptions,
    dicom_metadata,
    load_dicom,
    read_dicom,
)
from conceptlens.data._folder import load_folder
from conceptlens.data._images import read_image, read_mask
from conceptlens.data._manifest import load_manifest
from conceptlens.data._npz import load_npz
from conceptlens.data._splits import load_splits, make_splits, save_splits, stratified_split

__all__ = [
    # core types
    "ImageDataset",
    "Sample",
    "SkippedSample",
    # loaders
    "load_folder",
    "load_manifest",
    "load_npz",
    "load_dicom",
    "read_image",
    "read_mask",
    # DICOM
    "DICOM_METADATA_TAGS",
    "DicomOptions",
    "dicom_metadata",
    "read_dicom",
    # public-dataset adapters
    "CHESTXRAY14_LABELS",
    "CHEXPERT_LABELS",
    "HAM10000_CLASSES",
    "load_chestxray14",
    "load_chexpert",
    "load_fitzpatrick17k",
    "load_ham10000",
    "load_isic",
    # splits
    "load_splits",
    "make_splits",
    "save_splits",
    "stratified_split",
]


# Old homes of the SynthDerm names (before ``conceptlens.synthderm``): name -> new module.
# Resolved lazily so that ``data`` imports no other layer; each access warns.
_MOVED_TO_SYNTHDERM: dict[str, str] = {
    "SynthDerm": "conceptlens.synthderm._generator",
    "SynthDermBatch": "conceptlens.synthderm._generator",
    "generate_synthderm": "conceptlens.synthderm._generator",
    "synthderm_bayes_accuracy": "conceptlens.synthderm._generator",
    "write_synthderm": "conceptlens.synthderm._generator",
    "SynthDermConfig": "conceptlens.synthderm._presets",
    "list_synthderm_presets": "conceptlens.synthderm._presets",
    "CONCEPT_PHRASES": "conceptlens.synthderm._vocab",
    "PARAPHRASES": "conceptlens.synthderm._vocab",
    "SYNTHDERM_CLASSES": "conceptlens.synthderm._vocab",
    "SYNTHDERM_CONCEPTS": "conceptlens.synthderm._vocab",
}


def __getattr__(name: str) -> Any:
    module = _MOVED_TO_SYNTHDERM.get(name)
    if module is None:
        raise AttributeError(f"module 'conceptlens.data' has no attribute {name!r}")
    import importlib
    import warnings

    import conceptlens.synthderm

    if name in conceptlens.synthderm.__all__:
        where = f"conceptlens.synthderm; import it as `from conceptlens.synthderm import {name}`"
    else:  # an internal of the benchmark, not re-exported by conceptlens.synthderm
        where = f"{module} (internal); import it as `from {module} import {name}`"
    warnings.warn(
        f"conceptlens.data.{name} moved to {where} "
        "(the old path will be removed in a future release).",
        FutureWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), name)
