"""A tiny deterministic image encoder for the masking-study tests (no backbone needed)."""

from __future__ import annotations

import numpy as np
import xarray as xr


def pooled_features(ds, grid: int = 8):
    """Concept-like colour statistics and an average-pooled image as the embedding."""
    imgs = np.stack([ds[i].image for i in range(len(ds))]).astype(float) / 255.0
    n, h = imgs.shape[:2]
    k = h // grid
    emb = imgs[:, : k * grid, : k * grid].reshape(n, grid, k, grid, k, 3).mean((2, 4))
    emb = emb.reshape(n, -1)
    r, g, b = imgs[..., 0], imgs[..., 1], imgs[..., 2]
    stats = {
        "purple": ((r - g > 0.15) & (b - g > 0.15)).mean((1, 2)),
        "dark": (imgs.mean(-1) < 0.3).mean((1, 2)),
        "black": (imgs.max(-1) < 0.02).mean((1, 2)),
        "brightness": imgs.mean((1, 2, 3)),
        "blue": (b - r).mean((1, 2)),
        "contrast": imgs.std((1, 2, 3)),
    }
    meta = ds.metadata
    coords = {c: ("sample", meta[c].to_numpy()) for c in ("label", "site")}
    scores = xr.DataArray(
        np.column_stack(list(stats.values())),
        dims=("sample", "concept"),
        coords={"sample": list(ds.ids), "concept": list(stats), **coords},
        attrs={"backbone_fingerprint": "pooled-pixels"},
    )
    return scores, emb
