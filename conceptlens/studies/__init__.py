"""Studies: robustness audits, the shortcut finder and shortcut-masking studies."""

from conceptlens.studies._audit import AUDIT_METRICS, CLASS_METRICS, audit, load_audit, save_audit
from conceptlens.studies._delong import delong_test

__all__ = [
    # audits
    "AUDIT_METRICS",
    "CLASS_METRICS",
    "audit",
    "delong_test",
    "load_audit",
    "save_audit",
]
