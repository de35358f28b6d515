"""Pixel attributions with captum (the only module that imports captum).

* :class:`PixelIntegratedGradients` — Integrated Gradients (Sundararajan et al. 2017) of a
  class logit or of one concept's score with respect to the pixels, with captum's
  convergence delta (completeness: the attributions sum to ``F(x) - F(baseline)``).
* :class:`PatchGradCAM` — Grad-CAM (Selvaraju et al. 2017) on a ViT's patch tokens: the
  tokens entering the last transformer block are reshaped to the token grid (class and
  other prefix tokens dropped) so captum's ``LayerGradCam`` sees ``(B, C, H, W)``, then
  the map is upsampled to the image.  The last block's *input* is used, as
  pytorch-grad-cam does for ViTs (``blocks[-1].norm1``): in a class-token-pooled tower
  the patch tokens leaving the last block reach nothing, so their gradient is zero.

Both implement ``.attribute(images, target=...)`` and return an ``xr.DataArray`` laid out
like the input images.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError, MissingDependencyError
from conceptlens.explain._pixel import ConceptModelModule

__all__ = ["PatchGradCAM", "PixelIntegratedGradients"]


def _captum_attr() -> Any:
    try:
        from captum import attr
    except ImportError as exc:  # pragma: no cover - captum is a dependency
        raise MissingDependencyError(
            "pixel attributions need the `captum` package: pip install captum"
        ) from exc
    return attr


def _target_index(module: ConceptModelModule, target: Any, of: str) -> tuple[Any, int]:
    if of not in ("class", "concept"):
        raise ConfigError(f"of must be 'class' or 'concept', got {of!r}.")
    names = module.classes if of == "class" else module.concepts
    if of == "class" and not names:
        raise ConfigError("the module has no head; attribute a concept (of='concept').")
    plural = "classes" if of == "class" else "concepts"
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if str(target) in names and names.index(str(target)) != int(target):
            # a head fitted on integer labels (1, 2): 1 is a class and a column index
            raise DataError(
                f"target {target} is ambiguous: the {of} named '{target}' is column "
                f"{names.index(str(target))}, not {target}; pass target='{target}' for the "
                f"{of} by name (the {plural} are {names[:10]})."
            )
        if not 0 <= int(target) < len(names):
            raise DataError(f"target index {target} is out of range for {len(names)} {plural}.")
        return (module if of == "class" else module.concept_scores), int(target)
    if str(target) not in names:
        raise DataError(f"unknown {of} {target!r}; the {of}s are {names[:10]}.")
    return (module if of == "class" else module.concept_scores), names.index(str(target))


def _as_tensor(module: ConceptModelModule, images: Any) -> torch.Tensor:
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim == 3:
        x = x[None]
    s = module.image_size
    if x.ndim != 4 or tuple(x.shape[1:]) != (3, s, s):
        raise DataError(
            f"expected [0, 1] RGB images of shape (N, 3, {s}, {s}); got {tuple(x.shape)}. "
            "Use conceptlens.explain.images_to_pixels(backbone, images) to resize them."
        )
    if not torch.isfinite(x).all():
        raise DataError("the images contain NaN or infinite pixel values.")
    return x.to(module.mean.device)


class PixelIntegratedGradients:
    """Integrated Gradients of a class logit or a concept score w.r.t. the pixels.

    Parameters
    ----------
    module : ConceptModelModule
        From :func:`conceptlens.explain.concept_model_module`.
    n_steps : int, default=64
        Points on the path (Gauss-Legendre rule).
    internal_batch_size : int, default=16
        Path points evaluated per forward pass, so memory stays bounded whatever
        ``n_steps`` and the number of images.

    Examples
    --------
    >>> ig = PixelIntegratedGradients(module)  # doctest: +SKIP
    >>> a = ig.attribute(pixels, target="melanoma")  # doctest: +SKIP
    >>> a.dims, a.convergence_delta.dims  # doctest: +SKIP
    (('sample', 'channel', 'y', 'x'), ('sample',))
    """

    def __init__(
        self, module: ConceptModelModule, *, n_steps: int = 64, internal_batch_size: int = 16
    ) -> None:
        self.module = module
        self.n_steps = n_steps
        self.internal_batch_size = internal_batch_size

    def attribute(
        self, images: Any, target: Any, *, of: str = "class", baseline: Any = None
    ) -> xr.DataArray:
        """Attributions shaped like ``images``.

        Parameters
        ----------
        images : tensor or array (N, 3, S, S) in [0, 1]
        target : str or int
            Class (``of="class"``) or concept (``of="concept"``), by name or index.
        of : {"class", "concept"}
        baseline : float or tensor broadcastable to the images, optional
            Default: the backbone's normalisation mean, the "average pixel" that the
            network sees as an all-zero input.

        Returns
        -------
        xr.DataArray, dims ("sample", "channel", "y", "x"), name "attribution"
            Coordinates ``convergence_delta`` (sample,) — captum's
            ``sum(attribution) - (F(x) - F(baseline))`` — and ``output``/
            ``baseline_output`` (sample,).
        """
        attr = _captum_attr()
        func, idx = _target_index(self.module, target, of)
        x = _as_tensor(self.module, images)
        if baseline is None:
            baseline = getattr(self.module.embedder, "mean", torch.full((1, 3, 1, 1), 0.5))
        base = torch.broadcast_to(
            torch.as_tensor(baseline, dtype=x.dtype, device=x.device), x.shape
        )
        ig = attr.IntegratedGradients(func)
        a, delta = ig.attribute(
            x,
            baselines=base.contiguous(),
            target=idx,
            n_steps=int(self.n_steps),
            internal_batch_size=int(self.internal_batch_size),
            return_convergence_delta=True,
        )
        with torch.no_grad():
            out = func(x)[:, idx]
            out_b = func(base)[:, idx]
        return xr.DataArray(
            a.detach().cpu().numpy(),
            dims=("sample", "channel", "y", "x"),
            coords={
                "channel": ["R", "G", "B"],
                "convergence_delta": ("sample", delta.detach().cpu().numpy()),
                "output": ("sample", out.cpu().numpy()),
                "baseline_output": ("sample", out_b.cpu().numpy()),
            },
            name="attribution",
            attrs={
                "method": "integrated_gradients",
                "target": str(target),
                "of": of,
                "n_steps": int(self.n_steps),
            },
        )


def _token_block(module: ConceptModelModule) -> tuple[torch.nn.Module, tuple[int, int], bool]:
    """The last transformer block of the image tower, its token grid and batch layout."""
    visual = getattr(getattr(module.embedder, "model", None), "visual", None)
    if visual is None:
        raise ConfigError("Grad-CAM needs an open_clip image tower.")
    if hasattr(visual, "trunk") and hasattr(visual.trunk, "blocks"):  # timm ViT
        trunk = visual.trunk
        g = trunk.patch_embed.grid_size
        return trunk.blocks[-1], (int(g[0]), int(g[1])), True
    if hasattr(visual, "transformer") and hasattr(visual, "grid_size"):  # open_clip ViT
        g = visual.grid_size
        batch_first = bool(getattr(visual.transformer, "batch_first", True))
        return visual.transformer.resblocks[-1], (int(g[0]), int(g[1])), batch_first
    raise ConfigError(
        f"Grad-CAM on patch tokens needs a ViT image tower; this one is {type(visual).__name__}."
    )


class _Grid(torch.nn.Identity):
    """Identity on the (B, C, gh, gw) token grid: the layer LayerGradCam attributes."""


@contextmanager
def _grid_tap(block: torch.nn.Module, grid: tuple[int, int], batch_first: bool) -> Iterator[_Grid]:
    tap = _Grid()
    gh, gw = grid

    def hook(_mod: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        tokens = args[0]
        if not batch_first:
            tokens = tokens.transpose(0, 1)
        n_prefix = tokens.shape[1] - gh * gw
        if n_prefix < 0:
            raise ConfigError(f"the block has {tokens.shape[1]} tokens for a {gh}x{gw} grid.")
        prefix, patches = tokens[:, :n_prefix], tokens[:, n_prefix:]
        b, _, c = patches.shape
        g = tap(patches.transpose(1, 2).reshape(b, c, gh, gw))
        tokens = torch.cat([prefix, g.reshape(b, c, gh * gw).transpose(1, 2)], dim=1)
        if not batch_first:
            tokens = tokens.transpose(0, 1)
        return (tokens, *args[1:])

    handle = block.register_forward_pre_hook(hook)
    try:
        yield tap
    finally:
        handle.remove()


class PatchGradCAM:
    """Grad-CAM of a class logit or a concept score on a ViT's patch tokens.

    Parameters
    ----------
    module : ConceptModelModule
    relu : bool, default=True
        Keep positive evidence only (Grad-CAM's ReLU).

    Examples
    --------
    >>> cam = PatchGradCAM(module).attribute(px, target="ruler", of="concept")  # doctest: +SKIP
    >>> cam.dims  # doctest: +SKIP
    ('sample', 'y', 'x')
    """

    def __init__(self, module: ConceptModelModule, *, relu: bool = True) -> None:
        self.module = module
        self.relu = relu

    def attribute(self, images: Any, target: Any, *, of: str = "class") -> xr.DataArray:
        """Grad-CAM maps upsampled (bilinear) to the image size.

        Returns
        -------
        xr.DataArray, dims ("sample", "y", "x"), name "gradcam"
            Coordinate ``grid`` in attrs (the token grid the map was computed on).
        """
        attr = _captum_attr()
        func, idx = _target_index(self.module, target, of)
        x = _as_tensor(self.module, images)
        block, grid, batch_first = _token_block(self.module)
        with _grid_tap(block, grid, batch_first) as tap:
            cam = attr.LayerGradCam(func, tap).attribute(
                x, target=idx, relu_attributions=self.relu
            )
        maps = F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        return xr.DataArray(
            maps[:, 0].detach().cpu().numpy(),
            dims=("sample", "y", "x"),
            name="gradcam",
            attrs={"method": "gradcam", "target": str(target), "of": of, "grid": list(grid)},
        )
