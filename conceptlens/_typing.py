"""Type aliases shared by several layers (importable from everywhere, imports no layer)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["EmbedFn"]

#: A text encoder: list of str -> float32 array (n_texts, dim), one row per text, L2
#: normalised. ``Backbone.encode_text``, ``conceptlens.backbones.minilm_embed`` and
#: ``conceptlens.concepts.lexical_embed`` are such functions; the concept filters and the
#: literature retrieval take one as ``embed=``.
EmbedFn = Callable[[Sequence[str]], np.ndarray]
