"""PDF reports: a case report for one image and an audit report for a study.

Built with matplotlib's ``PdfPages`` (no system libraries); text is selectable and the
PDF metadata (title, author, subject, keywords, creator) is set.
"""

from conceptlens.reports._audit import audit_report, audit_summary
from conceptlens.reports._case import case_report, what_if

__all__ = ["case_report", "what_if", "audit_report", "audit_summary"]
