"""Dense patch tokens for localisation: the last block's value path (MaskCLIP and kin).

CLIP-style towers are trained through a pooled token, and their output patch tokens
localise poorly: the last block's query-key attention mixes every patch with global
context. MaskCLIP (Zhou et al., ECCV 2022) drops that attention in the last block and
keeps each token's own value vector, ``out_proj(v_proj(ln_1(x)))``; ClearCLIP (Lan et al.,
ECCV 2024) uses query-query ("self-self") attention instead and, like the MaskCLIP
re-implementations in SCLIP/ClearCLIP, drops the last block's residual and feed-forward
branch. The tokens then go through the tower's final norm and projection as usual.

Both are pure re-wirings of existing weights (no training) for open_clip's own
``VisionTransformer`` and timm ``VisionTransformer`` trunks (the BiomedCLIP code path).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from conceptlens.exceptions import ConfigError

__all__ = ["TOKEN_PATHS", "last_block_dense"]

#: ``output``: the tower's own output tokens; ``value``: MaskCLIP value path;
#: ``self``: ClearCLIP query-query attention (both without residual or feed-forward).
TOKEN_PATHS = ("output", "value", "self")


def _mix(q: torch.Tensor, v: torch.Tensor, heads: int, path: str) -> torch.Tensor:
    """Per-token values (``value``) or q-q attention over values (``self``), (N, L, D)."""
    if path == "value":
        return v
    n, length, dim = v.shape
    hd = dim // heads
    qh = q.reshape(n, length, heads, hd).transpose(1, 2)
    vh = v.reshape(n, length, heads, hd).transpose(1, 2)
    attn = torch.softmax(qh @ qh.transpose(-2, -1) / math.sqrt(hd), dim=-1)
    return (attn @ vh).transpose(1, 2).reshape(n, length, dim)


def _open_clip_last(block: Any, x: torch.Tensor, path: str) -> torch.Tensor:
    attn = block.attn
    if not isinstance(attn, torch.nn.MultiheadAttention) or attn.in_proj_weight is None:
        raise ConfigError(
            f"tokens={path!r} needs the last block to use torch's MultiheadAttention with a "
            f"packed in-projection; this tower's block has {type(attn).__name__}"
        )
    h = block.ln_1(x)
    q, _, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    return block.ls_1(attn.out_proj(_mix(q, v, attn.num_heads, path)))


def _timm_last(block: Any, x: torch.Tensor, path: str) -> torch.Tensor:
    attn = block.attn
    if not hasattr(attn, "qkv") or not hasattr(attn, "proj"):
        raise ConfigError(
            f"tokens={path!r} needs a timm attention with a fused qkv projection; the last "
            f"block has {type(attn).__name__}"
        )
    h = block.norm1(x)
    gate = getattr(attn, "gate", None)
    q, _, v = attn.qkv(h).chunk(3, dim=-1)
    q_norm = getattr(attn, "q_norm", None)
    if q_norm is not None and not isinstance(q_norm, torch.nn.Identity):
        n, length, dim = q.shape
        heads = attn.num_heads
        q = q_norm(q.reshape(n, length, heads, dim // heads)).reshape(n, length, dim)
    out = _mix(q, v, attn.num_heads, path)
    out = getattr(attn, "norm", torch.nn.Identity())(out)
    if gate is not None:
        out = out * gate(h).sigmoid()
    return block.ls1(attn.proj(out))


def last_block_dense(visual: Any, x: torch.Tensor, path: str) -> torch.Tensor:
    """Token sequence (N, L, width) of an image tower with the last block re-wired.

    Parameters
    ----------
    visual : module
        open_clip ``VisionTransformer`` or the ``trunk`` of an open_clip ``TimmModel``
        (a timm ``VisionTransformer``).
    x : torch.Tensor
        Preprocessed images (N, 3, S, S).
    path : {"value", "self"}

    Returns
    -------
    torch.Tensor
        All tokens (prefix tokens included), before the tower's final norm.
    """
    if path not in TOKEN_PATHS[1:]:
        raise ConfigError(f"tokens must be one of {TOKEN_PATHS}, got {path!r}")
    if hasattr(visual, "conv1") and hasattr(visual, "transformer"):  # open_clip ViT
        blocks = visual.transformer.resblocks
        if not getattr(visual.transformer, "batch_first", True):
            raise ConfigError(f"tokens={path!r} needs a batch-first open_clip transformer")
        h = visual._embeds(x)
        for blk in blocks[:-1]:
            h = blk(h)
        return _open_clip_last(blocks[-1], h, path)
    if hasattr(visual, "blocks") and hasattr(visual, "patch_embed"):  # timm ViT
        h = visual.patch_embed(x)
        h = visual._pos_embed(h)
        h = visual.patch_drop(h)
        h = visual.norm_pre(h)
        for blk in visual.blocks[:-1]:
            h = blk(h)
        return _timm_last(visual.blocks[-1], h, path)
    raise ConfigError(
        f"tokens={path!r} is defined for ViT image towers (open_clip ViT or timm "
        f"VisionTransformer), not {type(visual).__name__}"
    )
