"""Studies: robustness audits, the shortcut finder and shortcut-masking studies."""

from conceptlens.studies._audit import AUDIT_METRICS, CLASS_METRICS, audit, load_audit, save_audit
from conceptlens.studies._concepts import concept_audit
from conceptlens.studies._delong import delong_test
from conceptlens.studies._masking import MASKING_MODELS, masking_study
from conceptlens.studies._regions import CONDITIONS, FILLS, bounding_boxes, dilate, mask_images
from conceptlens.studies._shortcuts import ARTIFACT_GROUPS, find_shortcuts

__all__ = [
    # audits
    "AUDIT_METRICS",
    "CLASS_METRICS",
    "audit",
    "delong_test",
    "load_audit",
    "save_audit",
    # concepts and shortcuts
    "ARTIFACT_GROUPS",
    "concept_audit",
    "find_shortcuts",
    # shortcut-masking study
    "CONDITIONS",
    "FILLS",
    "MASKING_MODELS",
    "bounding_boxes",
    "dilate",
    "mask_images",
    "masking_study",
]
