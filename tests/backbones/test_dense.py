"""Dense patch tokens (MaskCLIP value path, ClearCLIP q-q attention) against references
built from the towers' own attention modules (hooks, masks and copied weights)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conceptlens.exceptions import ConfigError
from tests.backbones._tiny import TIMM_TOK, VIT_AVG, tiny_backbone


@pytest.fixture(scope="module", params=["openclip-vit", "timm-vit"])
def bb(request, tmp_path_factory):
    cfg = VIT_AVG if request.param == "openclip-vit" else TIMM_TOK
    return tiny_backbone(tmp_path_factory.mktemp(request.param), cfg, device="cpu")


def _images(bb, n=2):
    s = bb.image_size
    return np.random.default_rng(0).integers(0, 256, (n, s, s, 3), dtype=np.uint8)


def _reference(bb, images, path):
    """Capture the last block's attention input with a hook on the unchanged tower, run
    the tower's own attention module on it -- with an identity attention mask (value path)
    or with its key projection replaced by the query projection (q-q attention) -- and
    finish with the tower's final norm and projection (no residual, no MLP)."""
    visual = bb.model.visual
    timm = hasattr(visual, "trunk")
    tower = visual.trunk if timm else visual
    block = tower.blocks[-1] if timm else tower.transformer.resblocks[-1]
    norm = block.norm1 if timm else block.ln_1
    seen = {}
    handle = norm.register_forward_hook(lambda m, i, o: seen.__setitem__("h", o.detach()))
    x = bb.preprocess(images)
    with torch.no_grad():
        bb.model.encode_image(x)
    handle.remove()
    h = seen["h"]
    attn = copy.deepcopy(block.attn)
    length = h.shape[1]
    if path == "value":
        mask = torch.full((length, length), float("-inf")).fill_diagonal_(0.0)
    else:
        mask = None
        with torch.no_grad():
            if timm:
                d = attn.qkv.weight.shape[0] // 3
                attn.qkv.weight[d : 2 * d] = attn.qkv.weight[:d]
                if attn.qkv.bias is not None:
                    attn.qkv.bias[d : 2 * d] = attn.qkv.bias[:d]
            else:
                d = attn.embed_dim
                attn.in_proj_weight[d : 2 * d] = attn.in_proj_weight[:d]
                attn.in_proj_bias[d : 2 * d] = attn.in_proj_bias[:d]
    with torch.no_grad():
        if timm:
            out = block.ls1(attn(h, attn_mask=mask))
            seq = tower.norm(out)[:, tower.num_prefix_tokens :]
            seq = tower.fc_norm(seq)
            return visual.head(seq).numpy()
        out = block.ls_1(attn(h, h, h, need_weights=False, attn_mask=mask)[0])
        return (tower.ln_post(out[:, 1:]) @ tower.proj).numpy()


@pytest.mark.parametrize("path", ["value", "self"])
def test_dense_tokens_match_the_towers_own_attention(bb, path):
    imgs = _images(bb)
    got, grid = bb.patch_embeddings(imgs, tokens=path)
    ref = _reference(bb, imgs, path)
    assert got.shape == (2, *grid, ref.shape[-1])
    np.testing.assert_allclose(got.reshape(ref.shape), ref, atol=1e-5, rtol=1e-4)
    # and they really differ from the output tokens
    out, _ = bb.patch_embeddings(imgs)
    assert not np.allclose(out, got, atol=1e-3)


def test_dense_tokens_are_cached_under_their_own_kind(bb, tmp_path):
    imgs = _images(bb)
    first, _ = bb.patch_embeddings(imgs, tokens="value", cache=tmp_path)
    plain, _ = bb.patch_embeddings(imgs, cache=tmp_path)
    before = bb.n_image_encodes
    again, _ = bb.patch_embeddings(imgs, tokens="value", cache=tmp_path)
    assert bb.n_image_encodes == before  # read from the cache
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, plain, atol=1e-3)


def test_unknown_token_path_is_refused(bb):
    with pytest.raises(ConfigError, match="tokens must be one of"):
        bb.patch_embeddings(_images(bb), tokens="values")
