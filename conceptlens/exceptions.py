"""Exceptions and warnings raised by conceptlens.

Every error the library raises on purpose is a :class:`ConceptLensError`. Each
subclass also derives from the built-in exception it resembles, so code that
catches ``ValueError`` or ``KeyError`` keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BackboneUnavailableError",
    "BankError",
    "CacheError",
    "ConceptLensError",
    "ConceptLensWarning",
    "ConfigError",
    "DataError",
    "FilterWarning",
    "ImageDecodeError",
    "IntegrityError",
    "MissingDependencyError",
    "MissingFileError",
    "UnknownNameError",
    "unknown_names",
]


class ConceptLensError(Exception):
    """Base class of every error conceptlens raises on purpose."""


class DataError(ConceptLensError, ValueError):
    """Invalid data: bad manifest, unknown label, NaN label, wrong mask size, empty set."""


class ImageDecodeError(DataError):
    """An image or DICOM file could not be decoded (corrupt, truncated, missing plugin)."""


class MissingFileError(ConceptLensError, FileNotFoundError):
    """A file the user referenced does not exist."""


class ConfigError(ConceptLensError, ValueError):
    """An invalid configuration value or option combination."""


class UnknownNameError(ConceptLensError, KeyError):
    """A registry lookup missed (backbone, bank, preset...). The message lists what exists."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BankError(ConceptLensError, ValueError):
    """A concept bank file breaks the schema; the message names file, concept and field."""


class IntegrityError(ConceptLensError, ValueError):
    """A file does not match its expected checksum or size."""


class CacheError(ConceptLensError, RuntimeError):
    """An on-disk cache is corrupted or was written for something else."""


class BackboneUnavailableError(ConceptLensError, OSError):
    """Backbone weights cannot be found locally (and no network was allowed)."""


class MissingDependencyError(ConceptLensError, ImportError):
    """An optional dependency is needed for this feature; the message names the package."""


class ConceptLensWarning(UserWarning):
    """Warnings emitted by conceptlens (the test suite turns them into errors)."""


class FilterWarning(ConceptLensWarning):
    """A concept filter removed more than half of a bank: its cutoff may not suit the
    backbone's score scale."""


def unknown_names(what: str, unknown: Iterable[object], known: Iterable[object]) -> str:
    """A message naming unknown names, the closest known one for each, and what exists.

    Names are shown as plain quoted strings whatever their type (``np.str_`` included).

    Examples
    --------
    >>> print(unknown_names("concept", ["purple-ink"], ["ruler", "purple_ink"]))
    unknown concept 'purple-ink' (did you mean 'purple_ink'?); the concepts are 'ruler', \
'purple_ink'.
    """
    import difflib

    pool = list(dict.fromkeys(str(k) for k in known))
    parts = []
    for name in dict.fromkeys(str(u) for u in unknown):
        hit = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
        parts.append(repr(name) + (f" (did you mean {hit[0]!r}?)" if hit else ""))
    many = what + ("es" if what.endswith(("s", "x", "ch", "sh")) else "s")
    listed = ", ".join(repr(k) for k in pool) if pool else "(none)"
    return (
        f"unknown {many if len(parts) > 1 else what} {', '.join(parts)}; the {many} are {listed}."
    )
