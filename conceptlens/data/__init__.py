"""conceptlens.data: image datasets, loaders, public-dataset adapters and splits."""

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
from conceptlens.data._splits import load_splits, make_splits, save_splits

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
]

# SynthDerm generator
from conceptlens.data._synthderm import (
    SynthDerm,
    SynthDermBatch,
    generate_synthderm,
    synthderm_bayes_accuracy,
    write_synthderm,
)
from conceptlens.data._synthderm_presets import (
    SynthDermConfig,
    list_synthderm_presets,
)
from conceptlens.data._synthderm_vocab import (
    CONCEPT_PHRASES,
    PARAPHRASES,
    SYNTHDERM_CLASSES,
    SYNTHDERM_CONCEPTS,
)

__all__ += [
    # SynthDerm
    "CONCEPT_PHRASES",
    "PARAPHRASES",
    "SYNTHDERM_CLASSES",
    "SYNTHDERM_CONCEPTS",
    "SynthDerm",
    "SynthDermBatch",
    "SynthDermConfig",
    "generate_synthderm",
    "list_synthderm_presets",
    "synthderm_bayes_accuracy",
    "write_synthderm",
]
