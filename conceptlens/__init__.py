"""conceptlens: interpretable concept-bottleneck analysis of medical images.

The public API is re-exported here, grouped by stage of the pipeline
(data -> backbones -> concepts -> heads -> explanations -> studies -> reports).
"""

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

__all__ = (
    # version
    "__version__",
    # exceptions
    "BackboneUnavailableError",
    "BankError",
    "CacheError",
    "ConceptLensError",
    "ConceptLensWarning",
    "ConfigError",
    "DataError",
    "ImageDecodeError",
    "IntegrityError",
    "MissingDependencyError",
    "MissingFileError",
    "UnknownNameError",
)
