"""``minilm_embed``: the verified MiniLM sentence encoder used directly as a text encoder.

It sits next to the MiniLM loader (:mod:`conceptlens.backbones._minilm`, which finds the
files and checks them against their published hashes): synthderm-lit's text tower is this
encoder plus a projection, and literature retrieval falls back to it when a backbone's
weights are unavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["minilm_embed"]

_MINILM: dict[str, Any] = {}


def minilm_embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings from the verified MiniLM encoder (mean pooling, L2-normalised).

    The sentence-transformers recipe for all-MiniLM-L6-v2 (mean of the token states over
    the attention mask, then L2 normalisation), on files checked by
    :func:`conceptlens.backbones._minilm.minilm_dir`. An :data:`~conceptlens._typing.EmbedFn`.

    Parameters
    ----------
    texts : list of str
    batch_size : int, default 64
        Texts per forward pass (each batch is padded to its longest text).

    Returns
    -------
    numpy.ndarray
        float32, shape (len(texts), 384), unit rows.

    Examples
    --------
    >>> emb = minilm_embed(["blue-white veil", "a ruler next to the lesion"])
    >>> emb.shape, bool(abs(float((emb**2).sum(1)[0]) - 1) < 1e-5)
    ((2, 384), True)
    """
    if "model" not in _MINILM:
        import torch  # heavy; lazy
        from transformers import AutoModel, AutoTokenizer

        from conceptlens.backbones._minilm import minilm_dir

        folder = minilm_dir()
        _MINILM["tok"] = AutoTokenizer.from_pretrained(folder)
        _MINILM["model"] = AutoModel.from_pretrained(folder, use_safetensors=True).eval()
        _MINILM["torch"] = torch
    torch, tok, model = _MINILM["torch"], _MINILM["tok"], _MINILM["model"]
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tok(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    if not out:
        return np.zeros((0, 384), np.float32)
    return np.concatenate(out).astype(np.float32)
