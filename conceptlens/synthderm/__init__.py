"""conceptlens.synthderm: the embedded default benchmark and the training of its backbone.

SynthDerm is a procedural dermoscopy-like image generator with known ground truth
(concepts, classes, sites, artifact masks and planted shortcuts); its presets are YAML
files (``conceptlens/synthderm/presets/``) and a user can write their own. The same
subpackage trains and evaluates ``synthderm-lit``, the backbone shipped for it (the
backbone itself is loaded through :func:`conceptlens.load_backbone`); its concept bank is
``load_bank("synthderm")``.
"""

from conceptlens.synthderm._generator import (
    SynthDerm,
    SynthDermBatch,
    generate_synthderm,
    write_synthderm,
)
from conceptlens.synthderm._presets import SynthDermConfig, list_synthderm_presets
from conceptlens.synthderm._vocab import SYNTHDERM_CLASSES, SYNTHDERM_CONCEPTS

__all__ = [
    # generator
    "SynthDerm",
    "SynthDermBatch",
    "generate_synthderm",
    "write_synthderm",
    # presets
    "SynthDermConfig",
    "list_synthderm_presets",
    # vocabulary
    "SYNTHDERM_CLASSES",
    "SYNTHDERM_CONCEPTS",
]
