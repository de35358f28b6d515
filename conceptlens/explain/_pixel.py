"""The whole concept model as one differentiable torch module, for pixel attributions.

image [0, 1] RGB -> backbone image tower (its own normalisation) -> unit embedding ->
concept similarities (cosine, or cosine minus the reference prompt's for "relative"
scores) -> standardisation with the head's training mean and scale -> linear head.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.explain._linear import head_parameters

__all__ = ["ConceptModelModule", "concept_model_module", "images_to_pixels"]


class ConceptModelModule(torch.nn.Module):
    """image (N, 3, S, S) in [0, 1] -> class logits (N, k); ``concept_scores`` -> (N, C).

    Build it with :func:`concept_model_module`.  The module is batched and
    differentiable end to end; ``concept_scores`` equals
    :func:`conceptlens.score_concepts` on the same images and ``forward`` equals the
    head's ``decision_function`` on those scores (for a binary head: one column per
    class, the second class's log-odds and its negative).

    Attributes
    ----------
    concepts, classes : list of str
    image_size : int
    """

    text_weights: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(
        self,
        embedder: torch.nn.Module,
        text_weights: np.ndarray,
        concepts: list[str],
        head: Any | None,
        image_size: int,
    ) -> None:
        super().__init__()
        self.embedder = embedder
        self.concepts = list(concepts)
        self.image_size = int(image_size)
        self.register_buffer("text_weights", torch.as_tensor(text_weights, dtype=torch.float32))
        d = len(concepts)
        if head is None:
            mean, scale = np.zeros(d), np.ones(d)
            weight, bias, classes = np.zeros((0, d)), np.zeros(0), []
        else:
            mean, scale = head["baseline"].values, head["scale"].values
            # standardised head: logit = (coef * scale) . z + (intercept + coef . mean)
            weight = head["coef"].values * scale
            bias = head["intercept"].values + head["coef"].values @ mean
            classes = [str(c) for c in head["class"].values]
        self.classes = classes
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32))

    def concept_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Concept scores (N, C) of [0, 1] RGB images (N, 3, S, S)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise DataError(f"expected images (N, 3, H, W) in [0, 1]; got shape {tuple(x.shape)}.")
        return self.embedder(x) @ self.text_weights

    def standardized_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Scores standardised with the head's training mean and scale (N, C)."""
        return (self.concept_scores(x) - self.mean) / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, k)."""
        if self.weight.shape[0] == 0:
            raise ConfigError("this module was built without a head; use concept_scores().")
        return self.standardized_scores(x) @ self.weight.T + self.bias


def concept_model_module(
    backbone: Any,
    bank: Any,
    model: Any | None = None,
    *,
    mode: str = "relative",
    templates: Any = None,
    background: Any = None,
) -> ConceptModelModule:
    """Compose backbone, concept bank and fitted head into one differentiable module.

    Parameters
    ----------
    backbone : Backbone or name
    bank : ConceptBank or name
    model : fitted concept head, optional
        Without it the module only gives concept scores.
    mode : {"relative", "cosine"}
        As in :func:`conceptlens.score_concepts` (use the mode the head was trained on).
    templates : list of str, optional
        As in :func:`conceptlens.score_concepts`.
    background : optional
        Reference scores for a head fitted without standardisation.

    Returns
    -------
    ConceptModelModule
        In eval mode, on the backbone's device.

    Examples
    --------
    >>> m = concept_model_module("synthderm-lit", "synthderm")  # doctest: +SKIP
    >>> m.concept_scores(torch.rand(2, 3, 96, 96)).shape  # doctest: +SKIP
    torch.Size([2, 17])
    """
    from conceptlens.backbones import Backbone, load_backbone
    from conceptlens.concepts import concept_text_embeddings, load_bank

    if mode not in ("relative", "cosine"):
        raise ConfigError(f"mode must be 'relative' or 'cosine', got {mode!r}.")
    if not isinstance(backbone, Backbone):
        backbone = load_backbone(backbone)
    bank = load_bank(bank)
    text, ref, _ = concept_text_embeddings(
        backbone, bank, templates=templates, reference=mode == "relative"
    )
    weights = text if ref is None else text - ref[None, :]
    names = [str(n) for n in bank.names]
    head = None
    if model is not None:
        head = head_parameters(model, background)
        model_concepts = [str(c) for c in head["concept"].values]
        missing = [c for c in model_concepts if c not in set(names)]
        if missing:
            raise DataError(
                f"the model uses concept(s) {missing[:5]} that bank {bank.id!r} does not "
                "have; pass the bank the model was trained on."
            )
        order = [names.index(c) for c in model_concepts]
        weights, names = weights[order], model_concepts
    embedder = backbone.image_text_module(pixel_space=True)
    module = ConceptModelModule(
        embedder, np.ascontiguousarray(weights.T), names, head, backbone.image_size
    )
    return module.to(backbone.device).eval()


def images_to_pixels(backbone: Any, images: Any) -> torch.Tensor:
    """Images resized and cropped as the backbone does, as [0, 1] RGB (N, 3, S, S)."""
    x = backbone.preprocess(images)
    mean = torch.tensor(backbone.config.mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(backbone.config.std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * std + mean).clamp_(0.0, 1.0)
