# Generated from conceptlens._API and conceptlens._EXCEPTIONS by tests/test_api.py;
# do not edit: change the table in conceptlens/__init__.py, then run
#     python -m tests.test_api
# ruff: noqa: I001  (grouped as in the table, not sorted)
from conceptlens._version import __version__ as __version__
from conceptlens.exceptions import (
    ConceptLensError as ConceptLensError,
    DataError as DataError,
    ImageDecodeError as ImageDecodeError,
    MissingFileError as MissingFileError,
    ConfigError as ConfigError,
    UnknownNameError as UnknownNameError,
    BankError as BankError,
    IntegrityError as IntegrityError,
    CacheError as CacheError,
    BackboneUnavailableError as BackboneUnavailableError,
    MissingDependencyError as MissingDependencyError,
    ConceptLensWarning as ConceptLensWarning,
)
from conceptlens.data import (
    ImageDataset as ImageDataset,
    load_manifest as load_manifest,
    load_folder as load_folder,
    load_npz as load_npz,
    load_dicom as load_dicom,
    make_splits as make_splits,
)
from conceptlens.synthderm import (
    SynthDerm as SynthDerm,
    SynthDermConfig as SynthDermConfig,
    write_synthderm as write_synthderm,
)
from conceptlens.backbones import (
    Backbone as Backbone,
    load_backbone as load_backbone,
    list_backbones as list_backbones,
    add_backbone_config as add_backbone_config,
)
from conceptlens.concepts import (
    ConceptBank as ConceptBank,
    load_bank as load_bank,
    list_banks as list_banks,
    generate_bank as generate_bank,
    retrieve_concepts as retrieve_concepts,
    filter_bank as filter_bank,
    select_concepts as select_concepts,
    score_concepts as score_concepts,
    embed_images as embed_images,
    write_scores as write_scores,
    ConceptStandardizer as ConceptStandardizer,
)
from conceptlens.heads import (
    ConceptBottleneckClassifier as ConceptBottleneckClassifier,
    LinearProbe as LinearProbe,
    SparseLinearHead as SparseLinearHead,
    SparseLinearHeadCV as SparseLinearHeadCV,
    classification_metrics as classification_metrics,
    save_head as save_head,
    load_head as load_head,
)
from conceptlens.explain import (
    contributions as contributions,
    to_shap as to_shap,
    global_importance as global_importance,
    top_concepts as top_concepts,
)
from conceptlens.masking import (
    intervene as intervene,
    intervention_curve as intervention_curve,
    TestTimeMasking as TestTimeMasking,
)
from conceptlens.spatial import (
    concept_maps as concept_maps,
    build_atlas as build_atlas,
    PrototypeClassifier as PrototypeClassifier,
)
from conceptlens.studies import (
    audit as audit,
    concept_audit as concept_audit,
    find_shortcuts as find_shortcuts,
    masking_study as masking_study,
)
from conceptlens.reports import (
    case_report as case_report,
    audit_report as audit_report,
)
from conceptlens._demo import (
    run_demo as run_demo,
)
from conceptlens._io import (
    cache_root as cache_root,
)

__all__ = [
    "__version__",
    "ImageDataset",
    "load_manifest",
    "load_folder",
    "load_npz",
    "load_dicom",
    "make_splits",
    "SynthDerm",
    "SynthDermConfig",
    "write_synthderm",
    "Backbone",
    "load_backbone",
    "list_backbones",
    "add_backbone_config",
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
    "ConceptBottleneckClassifier",
    "LinearProbe",
    "SparseLinearHead",
    "SparseLinearHeadCV",
    "classification_metrics",
    "save_head",
    "load_head",
    "contributions",
    "to_shap",
    "global_importance",
    "top_concepts",
    "intervene",
    "intervention_curve",
    "TestTimeMasking",
    "concept_maps",
    "build_atlas",
    "PrototypeClassifier",
    "audit",
    "concept_audit",
    "find_shortcuts",
    "masking_study",
    "case_report",
    "audit_report",
    "run_demo",
    "cache_root",
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
]
