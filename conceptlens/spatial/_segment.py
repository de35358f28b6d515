"""Mask-supervised, pixel-level concept segmentation (trainable segmentation on tokens).

Unlike :func:`~conceptlens.spatial.concept_maps`, which is zero-shot (a patch token's
cosine with a concept's text embedding), a :class:`ConceptSegmenter` is **trained on
annotated masks**, in the spirit of ilastik's pixel classification and Fiji's Trainable
Weka Segmentation: every pixel gets a feature vector made of

* **pixel features** (:func:`pixel_features`): a fixed filter bank on the image --
  intensity and two colour-opponent channels plus chroma, their Gaussian smoothing,
  gradient magnitude, Laplacian of Gaussian and the two Hessian eigenvalues (ridges:
  hair, streaks, network lines) at a few scales;
* **token features**: the backbone's patch tokens reduced by a PCA fitted on the
  training images (and, with ``bank=``, the bank's zero-shot concept maps), upsampled
  bilinearly from the patch grid to pixels;

and, per concept, a classifier (logistic regression or a one-hidden-layer MLP) is fitted
on a class-balanced, seeded subsample of the training pixels; its logits are shifted to
the concept's pixel prior in the training images at prediction. Saved as safetensors +
JSON (no pickle).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from conceptlens._io import atomic_dir, read_json, user_path
from conceptlens._version import __version__
from conceptlens.exceptions import ConfigError, DataError, UnknownNameError
from conceptlens.spatial._atlas import check_binary, names_list, unit_patches
from conceptlens.spatial._maps import _as_list, check_image_sizes, patch_grid
from conceptlens.spatial._pixel import (
    _fit_classifier,
    default_sigmas,
    pixel_feature_names,
    pixel_features,
)

__all__ = ["ConceptSegmenter"]

_FEATURES = ("both", "pixel", "token")
_CLASSIFIERS = ("logistic", "mlp")
_FORMAT = 2  # 2: pixel priors (prior-shifted probabilities), vesselness, local std
_TENSOR_FILE = "segmenter.safetensors"
_META_FILE = "segmenter.json"


# ----------------------------------------------------------------------------- masks
def _mask_table(
    masks: Any, n: int, size: int, ids: list[str], named_ids: bool
) -> dict[str, np.ndarray]:
    """Concept -> (n, size, size) bool, validated; every concept needs a positive pixel.

    ``named_ids``: the images carry their own ids, which a DataArray's ``sample``
    coordinate must then follow."""
    if isinstance(masks, xr.DataArray):
        if set(masks.dims) != {"sample", "concept", "y", "x"}:
            raise DataError(
                f"masks must be an xr.DataArray with dims ('sample', 'concept', 'y', 'x'), "
                f"got {masks.dims}; or a mapping concept -> (n, H, W) bool array"
            )
        masks = masks.transpose("sample", "concept", "y", "x")
        if "sample" in masks.coords:
            got = [str(s) for s in masks["sample"].values]
            if named_ids and got != ids:
                bad = next(i for i, (a, b) in enumerate(zip(got, ids, strict=True)) if a != b)
                raise DataError(
                    f"masks and images are not in the same sample order: masks sample "
                    f"{got[bad]!r} is image {ids[bad]!r} (position {bad}); align them with "
                    "masks.sel(sample=image_ids)"
                )
        if "concept" not in masks.coords:
            raise DataError("masks need a 'concept' coordinate naming each concept")
        table = {str(c): masks.sel(concept=c).values for c in masks["concept"].values}
        if len(table) != masks.sizes["concept"]:
            raise DataError("masks name a concept twice; give each concept one mask")
    elif isinstance(masks, Mapping):
        table = {str(c): np.asarray(m) for c, m in masks.items()}
    else:
        raise DataError(
            f"masks must be an xr.DataArray (sample, concept, y, x) or a mapping concept -> "
            f"(n, H, W) bool array, got {type(masks).__name__}"
        )
    if not table:
        raise DataError("masks name no concept; give at least one concept's masks")
    out = {}
    for c, m in table.items():
        if m.shape != (n, size, size):
            raise DataError(
                f"masks of concept {c!r} have shape {m.shape}, but the {n} images are "
                f"{size}x{size}: give one (H, W) mask per image, at the image's size "
                f"({n}, {size}, {size}), all False where the concept is absent"
            )
        m = check_binary(m, f"masks of concept {c!r}")
        if not m.any():
            raise DataError(
                f"the masks of concept {c!r} have no positive pixel in any of the {n} "
                "training images; annotate at least one region of it or leave the concept out"
            )
        if m.all():
            raise DataError(
                f"the masks of concept {c!r} cover every pixel of every training image; "
                "there is nothing to tell it apart from"
            )
        out[c] = m
    return out


# ----------------------------------------------------------------------------- estimator
class ConceptSegmenter(BaseEstimator):
    """Pixel-level concept segmenter trained on annotated masks (supervised).

    Parameters
    ----------
    features : {"pixel", "both", "token"}, default "pixel"
        Per-pixel features: the pixel filter bank (:func:`pixel_features`), the
        backbone's patch tokens (PCA, and the bank's concept maps with ``bank``)
        upsampled bilinearly to pixels, or both. ``"pixel"`` localised best on SynthDerm
        with synthderm-lit (chosen on calibration images, ``docs/spatial.md``); the
        tokens may help with a stronger backbone -- measure it on your data.
    n_components : int, default 16
        PCA components of the patch tokens (fitted on the training images).
    bank : ConceptBank or name, optional
        Also use the bank's zero-shot concept maps (cosine) as token features.
    sigmas : sequence of float, optional
        Filter scales in pixels; default 0.5, 0.7, 1, 1.6, 2.5 and 4 px at 96 px,
        scaled to the image size (:func:`default_sigmas`).
    vesselness : bool, default False
        Add Frangi's line measure of bright and dark lines at every scale
        (:func:`pixel_features`; it did not help on SynthDerm).
    local_std : bool, default True
        Add the local standard deviation of intensity and chroma at every scale.
    classifier : {"mlp", "logistic"}, default "mlp"
        Per concept: an MLP with one ReLU hidden layer of ``hidden`` units, or logistic
        regression (a weight per named feature: readable). The MLP localised better on
        SynthDerm (chosen on calibration images, ``docs/spatial.md``).
    hidden : int, default 64
        Hidden units of the MLP.
    alpha : float, default 1e-4
        L2 penalty on the weights (the loss is the class-balanced mean log loss).
    max_pixels : int, default 100000
        Training pixels per concept: up to half positive and half negative, drawn
        uniformly (seeded) over all training images; each class gets half the weight.
    max_iter : int, default 200
        L-BFGS iterations per concept.
    random_state : int, default 0

    Attributes
    ----------
    concepts_ : list of str
    backbone_ : str
        Name of the backbone the tokens came from (checked at prediction).
    image_size_, grid_ : int
    feature_names_ : list of str
    n_train_images_ : int
    n_train_pixels_ : dict concept -> {"positive": int, "negative": int}
    pixel_prior_ : dict concept -> float
        Fraction of the training images' pixels inside the concept's masks (images
        without the concept included); :meth:`predict_maps` shifts the balanced
        classifiers' logits to it.
    n_iter_ : dict concept -> int
        L-BFGS iterations run (``max_iter`` when it stopped there, not converged).
    final_gradient_ : dict concept -> float
        Largest absolute gradient of the training loss at the end (0 at the optimum).
    fit_seconds_ : float

    Notes
    -----
    The classifiers are fitted under class balance (each concept's positive and negative
    training pixels weigh the same); :meth:`predict_maps` shifts their logits to the
    concept's pixel prior in the training images, so a map reads as the probability of
    the concept at that pixel when concepts are as frequent as in training
    (``balanced=True`` gives the balanced ones). For the best IoU, still choose the
    threshold on held-out annotated images (the benchmark does): for small structures
    it lies below 0.5 of the prior-shifted probability.

    Examples
    --------
    >>> bb = load_backbone("synthderm-lit")  # doctest: +SKIP
    >>> train = SynthDerm().generate(40, seed=0)  # doctest: +SKIP
    >>> seg = ConceptSegmenter().fit(bb, train.images, train.artifact_masks)  # doctest: +SKIP
    >>> seg.predict_maps(bb, test.images).dims  # doctest: +SKIP
    ('sample', 'concept', 'y', 'x')
    """

    def __init__(
        self,
        *,
        features: str = "pixel",
        n_components: int = 16,
        bank: Any = None,
        sigmas: Sequence[float] | None = None,
        vesselness: bool = False,
        local_std: bool = True,
        classifier: str = "mlp",
        hidden: int = 64,
        alpha: float = 1e-4,
        max_pixels: int = 100000,
        max_iter: int = 200,
        random_state: int = 0,
    ) -> None:
        self.features = features
        self.n_components = n_components
        self.bank = bank
        self.sigmas = sigmas
        self.vesselness = vesselness
        self.local_std = local_std
        self.classifier = classifier
        self.hidden = hidden
        self.alpha = alpha
        self.max_pixels = max_pixels
        self.max_iter = max_iter
        self.random_state = random_state

    # -- parameters
    def _check_params(self) -> None:
        def pos_int(v: Any) -> bool:
            return bool(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1)

        checks = {
            "features": (self.features in _FEATURES, f"one of {_FEATURES}"),
            "classifier": (self.classifier in _CLASSIFIERS, f"one of {_CLASSIFIERS}"),
            "n_components": (pos_int(self.n_components), "a positive int"),
            "hidden": (pos_int(self.hidden), "a positive int"),
            "max_pixels": (pos_int(self.max_pixels) and self.max_pixels >= 2, "an int >= 2"),
            "max_iter": (pos_int(self.max_iter), "a positive int"),
            "alpha": (
                isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha)
                and self.alpha >= 0,
                "a finite float >= 0",
            ),
            "random_state": (isinstance(self.random_state, (int, np.integer)), "an int"),
            "vesselness": (isinstance(self.vesselness, bool), "True or False"),
            "local_std": (isinstance(self.local_std, bool), "True or False"),
            "sigmas": (
                self.sigmas is None
                or (
                    isinstance(self.sigmas, (Sequence, np.ndarray))
                    and len(self.sigmas) > 0
                    and all(
                        isinstance(s, (int, float, np.number)) and s > 0 and math.isfinite(s)
                        for s in self.sigmas
                    )
                ),
                "None or a non-empty sequence of positive pixels",
            ),
        }  # fmt: skip
        for name, (ok, what) in checks.items():
            if not ok:
                raise ConfigError(
                    f"ConceptSegmenter: {name} must be {what}, got {getattr(self, name)!r}"
                )
        if self.features == "pixel" and self.bank is not None:
            raise ConfigError(
                "ConceptSegmenter: bank= adds token features, but features='pixel' uses "
                "none; use features='both' or 'token', or drop bank"
            )

    def _check_fitted(self) -> None:
        if not hasattr(self, "concepts_"):
            raise NotFittedError(
                "this ConceptSegmenter is not fitted yet; call fit(backbone, images, masks) "
                "or ConceptSegmenter.load(path)"
            )

    # -- features
    def _uses_tokens(self) -> bool:
        return self.features in ("both", "token")

    def _uses_pixels(self) -> bool:
        return self.features in ("both", "pixel")

    def _tokens(
        self, backbone: Any, images: Any, patches: Any, cache: Any, batch_size: Any, n: int
    ) -> np.ndarray | None:
        if not self._uses_tokens():
            return None
        if patches is None:
            unit, _ = patch_grid(backbone, images, cache=cache, batch_size=batch_size)
            return unit
        unit = unit_patches(patches)
        if len(unit) != n:
            raise DataError(f"patches hold {len(unit)} images but images has {n}")
        return unit

    def _token_maps(self, unit: np.ndarray, size: int) -> np.ndarray:
        """(N, gh, gw, D) unit tokens -> (N, K, size, size) token feature maps."""
        mean, comps = self.pca_mean_, self.pca_components_
        if mean is None or comps is None:
            raise NotFittedError("token features need the PCA fitted in fit(); fit first")
        parts = [(unit - mean) @ comps.T]
        if self.directions_ is not None:
            parts.append(unit @ self.directions_.T)
        grid = np.concatenate(parts, axis=-1).transpose(0, 3, 1, 2)
        t = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))
        up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        return up.numpy()

    def _image_features(self, image: np.ndarray, tok: np.ndarray | None) -> np.ndarray:
        """(F, H * W) float32 features of one image; ``tok`` its (K, H, W) token maps."""
        parts = []
        if self._uses_pixels():
            parts.append(
                pixel_features(
                    image, self.sigmas_, vesselness=self.vesselness, local_std=self.local_std
                )
            )
        if tok is not None:
            parts.append(tok)
        feats = np.concatenate(parts)
        return feats.reshape(len(feats), -1)

    def _feature_names(self, token_dim: int) -> list[str]:
        names = (
            pixel_feature_names(self.sigmas_, vesselness=self.vesselness, local_std=self.local_std)
            if self._uses_pixels()
            else []
        )
        if self._uses_tokens():
            names += [f"token_pc{i}" for i in range(self.n_pca_)]
            names += [f"concept_map_{c}" for c in self.bank_concepts_]
        return names

    # -- fit
    def fit(
        self,
        backbone: Any,
        images: Any,
        masks: Any,
        *,
        patches: Any = None,
        cache: Any = None,
        batch_size: int | None = None,
    ) -> ConceptSegmenter:
        """Fit one pixel classifier per concept of ``masks``.

        Parameters
        ----------
        backbone : Backbone
            E.g. ``load_backbone("synthderm-lit")``; images must be its input size.
        images : uint8 array (N, S, S, 3), list of images or ImageDataset
        masks : xr.DataArray (sample, concept, y, x) or mapping concept -> (N, S, S)
            Boolean (or 0/1) ground truth, all False where a concept is absent; every
            concept needs at least one positive pixel in some image.
        patches : array (N, gh, gw, D), optional
            The images' patch embeddings, if already computed (e.g. from a cache).
        cache, batch_size
            Passed to :meth:`Backbone.patch_embeddings`.

        Returns
        -------
        self

        Raises
        ------
        DataError
            An image of the wrong size (naming the sample), masks of the wrong shape or
            without any positive pixel (naming the concept).
        """
        self._check_params()
        t0 = time.perf_counter()
        ids = check_image_sizes(backbone, images)
        n, get = _as_list(images)
        size = int(backbone.image_size)
        table = _mask_table(masks, n, size, ids, getattr(images, "ids", None) is not None)
        self.sigmas_ = [float(s) for s in (self.sigmas or default_sigmas(size))]
        # separate streams: the training pixels do not depend on the features used
        rng_tokens, rng = np.random.default_rng(self.random_state).spawn(2)

        unit = self._tokens(backbone, images, patches, cache, batch_size, n)
        self.pca_mean_ = self.pca_components_ = self.directions_ = None
        self.bank_concepts_: list[str] = []
        self.bank_id_ = ""
        self.grid_ = self.n_pca_ = 0
        if unit is not None:
            flat = unit.reshape(-1, unit.shape[-1])
            sub = flat[rng_tokens.choice(len(flat), min(len(flat), 20000), replace=False)]
            self.pca_mean_ = sub.mean(axis=0).astype(np.float32)
            _, _, vt = np.linalg.svd(sub - self.pca_mean_, full_matrices=False)
            self.pca_components_ = np.ascontiguousarray(vt[: self.n_components], np.float32)
            self.grid_ = int(unit.shape[1])
            self.n_pca_ = len(self.pca_components_)
            if self.bank is not None:
                from conceptlens.concepts import load_bank
                from conceptlens.spatial._maps import concept_directions

                bank = load_bank(self.bank)
                w, names, _ = concept_directions(backbone, bank, mode="cosine")
                self.directions_, self.bank_concepts_ = w, names
                self.bank_id_ = str(bank.id)

        # seeded, class-balanced pixel samples per concept (flat indices over all images)
        half = self.max_pixels // 2
        chosen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.n_train_pixels_ = {}
        for c, m in table.items():
            flat_m = m.reshape(-1)
            pos, neg = np.flatnonzero(flat_m), np.flatnonzero(~flat_m)
            pos = np.sort(rng.choice(pos, min(half, len(pos)), replace=False))
            neg = np.sort(rng.choice(neg, min(half, len(neg)), replace=False))
            chosen[c] = (pos, neg)
            self.n_train_pixels_[c] = {"positive": len(pos), "negative": len(neg)}
        # the concepts' pixel priors in the training images (for the prior shift)
        self.pixel_prior_ = {c: float(m.mean()) for c, m in table.items()}
        union = np.unique(np.concatenate([np.concatenate(pn) for pn in chosen.values()]))
        npx = size * size
        rows = []
        for i in range(n):
            lo, hi = np.searchsorted(union, [i * npx, (i + 1) * npx])
            if hi == lo:
                continue
            tok = None if unit is None else self._token_maps(unit[i : i + 1], size)[0]
            feats = self._image_features(np.asarray(get(i)), tok)
            rows.append(feats[:, union[lo:hi] - i * npx].T)
        x_all = np.concatenate(rows)
        self.feature_mean_ = x_all.mean(axis=0).astype(np.float32)
        scale = x_all.std(axis=0)
        self.feature_scale_ = np.where(scale > 1e-8, scale, 1.0).astype(np.float32)
        x_all = (x_all - self.feature_mean_) / self.feature_scale_

        hidden = 0 if self.classifier == "logistic" else int(self.hidden)
        fitted = []
        for k, (pos, neg) in enumerate(chosen.values()):
            idx = np.searchsorted(union, np.concatenate([pos, neg]))
            y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
            w = np.r_[np.full(len(pos), 0.5 / len(pos)), np.full(len(neg), 0.5 / len(neg))]
            fitted.append(
                _fit_classifier(
                    x_all[idx],
                    y,
                    w,
                    hidden=hidden,
                    alpha=float(self.alpha),
                    max_iter=int(self.max_iter),
                    seed=int(self.random_state) + k,
                )
            )
        diag = ("n_iter", "grad_max")
        self.weights_ = {
            key: np.stack([f[key] for f in fitted]) for key in fitted[0] if key not in diag
        }
        self.concepts_ = list(table)
        self.n_iter_ = {c: int(f["n_iter"]) for c, f in zip(table, fitted, strict=True)}
        self.final_gradient_ = {
            c: float(f["grad_max"]) for c, f in zip(table, fitted, strict=True)
        }
        self.backbone_ = str(getattr(backbone, "name", ""))
        self.image_size_ = size
        self.token_dim_ = 0 if unit is None else int(unit.shape[-1])
        self.feature_names_ = self._feature_names(self.token_dim_)
        self.n_train_images_ = int(n)
        self.fit_seconds_ = float(time.perf_counter() - t0)
        return self

    # -- predict
    def _prior_logit(self, concepts: Sequence[str]) -> np.ndarray:
        """Prior-shift term of each concept: ``log(pi / (1 - pi))`` minus the balanced
        sample's ``log(0.5 / 0.5)``, which is 0."""
        pi = np.array([self.pixel_prior_[c] for c in concepts], dtype=np.float64)
        return np.log(pi) - np.log1p(-pi)

    def _logits(self, x: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """(P, F) standardised features -> (P, K) logits of the concepts ``keep``."""
        wts = {k: v[keep] for k, v in self.weights_.items()}
        if "w" in wts:
            return x @ wts["w"].T + wts["b"]
        k, n_feat, hid = wts["w1"].shape
        w1 = wts["w1"].transpose(1, 0, 2).reshape(n_feat, k * hid)  # one GEMM for all
        h = np.maximum(x @ w1 + wts["b1"].reshape(-1), 0.0).reshape(len(x), k, hid)
        return np.einsum("pkh,kh->pk", h, wts["w2"]) + wts["b2"]

    def predict_maps(
        self,
        backbone: Any,
        images: Any,
        *,
        concepts: Sequence[str] | None = None,
        balanced: bool = False,
        patches: Any = None,
        cache: Any = None,
        batch_size: int | None = None,
    ) -> xr.DataArray:
        """Per-pixel probability of each concept.

        The classifiers are fitted on class-balanced pixels, so their raw output is the
        probability under a 50 % prior. By default it is corrected to the concept's
        pixel prior ``pi`` in the training images (:attr:`pixel_prior_`) by Bayes' prior
        shift on the logit, ``z + log(pi / (1 - pi)) - log(0.5 / 0.5)``: a probability
        that a pixel shows the concept, as often as in the training images.

        Parameters
        ----------
        backbone : Backbone
            The backbone the segmenter was fitted with (its name is checked).
        images : uint8 array (N, S, S, 3), list of images or ImageDataset
        concepts : list of str, optional
            A subset of the trained concepts (default all).
        balanced : bool, default False
            Return the class-balanced probabilities (no prior shift) instead.
        patches, cache, batch_size
            As in :meth:`fit`.

        Returns
        -------
        xr.DataArray, float32 in [0, 1], dims ("sample", "concept", "y", "x")
            At pixel resolution, name ``"concept_segmentation"``; usable by
            :func:`mask_iou`, :func:`pointing_game` and
            :func:`conceptlens.plot.plot_concept_maps`. attrs: ``backbone``,
            ``supervised`` ("masks"), ``classifier``, ``features``, ``probability``
            ("pixel prior" or "class-balanced").

        Raises
        ------
        NotFittedError, UnknownNameError (a concept not trained, named),
        DataError (an image of the wrong size, named), ConfigError (another backbone).
        """
        self._check_fitted()
        keep_names = (
            list(self.concepts_)
            if concepts is None
            else names_list(concepts, "concepts", allow_empty=False)
        )
        unknown = [c for c in keep_names if c not in self.concepts_]
        if unknown:
            raise UnknownNameError(
                f"concept(s) {unknown} were not trained in this segmenter; it segments "
                f"{self.concepts_}. Fit it with masks of those concepts"
            )
        name = str(getattr(backbone, "name", ""))
        if self._uses_tokens() and self.backbone_ and name != self.backbone_:
            raise ConfigError(
                f"this segmenter was fitted on tokens of backbone {self.backbone_!r}, not "
                f"{name!r}; predict with the backbone it was fitted with"
            )
        if int(backbone.image_size) != self.image_size_:
            raise ConfigError(
                f"this segmenter was fitted on {self.image_size_} px images, the backbone "
                f"takes {backbone.image_size} px"
            )
        ids = check_image_sizes(backbone, images)
        n, get = _as_list(images)
        size = self.image_size_
        unit = self._tokens(backbone, images, patches, cache, batch_size, n)
        if unit is not None and (unit.shape[-1] != self.token_dim_ or unit.shape[1] != self.grid_):
            raise DataError(
                f"patch tokens {unit.shape[1:]} differ from the training tokens "
                f"({self.grid_}, {self.grid_}, {self.token_dim_})"
            )
        keep = np.array([self.concepts_.index(c) for c in keep_names])
        if not isinstance(balanced, bool):
            raise ConfigError(f"balanced must be True or False, got {balanced!r}")
        shift = np.zeros(len(keep)) if balanced else self._prior_logit(keep_names)
        out = np.empty((n, len(keep), size, size), np.float32)
        for i in range(n):
            tok = None if unit is None else self._token_maps(unit[i : i + 1], size)[0]
            x = self._image_features(np.asarray(get(i)), tok).T - self.feature_mean_
            x /= self.feature_scale_
            z = self._logits(x, keep)
            out[i] = expit(z + shift).T.reshape(len(keep), size, size)
        return xr.DataArray(
            out,
            dims=("sample", "concept", "y", "x"),
            coords={"sample": ids, "concept": keep_names},
            name="concept_segmentation",
            attrs={
                "backbone": self.backbone_,
                "supervised": "masks",
                "classifier": self.classifier,
                "features": self.features,
                "image_size": size,
                "probability": "class-balanced" if balanced else "pixel prior",
            },
        )

    # -- save / load
    def _params_json(self) -> dict[str, Any]:
        p = self.get_params()
        p["bank"] = self.bank_id_ or None
        p["sigmas"] = None if self.sigmas is None else [float(s) for s in self.sigmas]
        return {k: (int(v) if isinstance(v, np.integer) else v) for k, v in p.items()}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted segmenter to the folder ``path`` (replaced atomically).

        ``segmenter.safetensors`` holds the arrays (feature standardisation, token PCA,
        the bank's concept directions, the classifiers' weights); ``segmenter.json`` the
        parameters and provenance: backbone, concepts, training images and pixels per
        concept, the feature names and filter scales, the conceptlens version.
        Nothing is pickled.

        Returns
        -------
        pathlib.Path
        """
        from safetensors.numpy import save as save_bytes

        self._check_fitted()
        arrays = {"feature_mean": self.feature_mean_, "feature_scale": self.feature_scale_}
        if self.pca_components_ is not None:
            arrays["pca_mean"] = self.pca_mean_
            arrays["pca_components"] = self.pca_components_
        if self.directions_ is not None:
            arrays["directions"] = self.directions_
        arrays.update({f"clf_{k}": v for k, v in self.weights_.items()})
        meta = {
            "format": _FORMAT,
            "kind": "ConceptSegmenter",
            "conceptlens_version": __version__,
            "supervised": "masks",
            "params": self._params_json(),
            "concepts": list(self.concepts_),
            "backbone": self.backbone_,
            "image_size": self.image_size_,
            "grid": self.grid_,
            "token_dim": self.token_dim_,
            "n_pca": self.n_pca_,
            "sigmas": list(self.sigmas_),
            "bank_concepts": list(self.bank_concepts_),
            "feature_names": list(self.feature_names_),
            "n_train_images": self.n_train_images_,
            "n_train_pixels": self.n_train_pixels_,
            "pixel_prior": self.pixel_prior_,
            "fit_seconds": self.fit_seconds_,
            "n_iter": self.n_iter_,
            "final_gradient": self.final_gradient_,
        }
        blob = save_bytes({k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()})
        from conceptlens.spatial._io import _target

        final = _target(path, _META_FILE, "ConceptSegmenter.save")
        with atomic_dir(final) as tmp:
            (tmp / _TENSOR_FILE).write_bytes(blob)
            (tmp / _META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        return final

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ConceptSegmenter:
        """Read a segmenter written by :meth:`save`; every field and array is checked.

        Raises
        ------
        MissingFileError, DataError
            A missing folder or file, a damaged or foreign file; the message names it.
        """
        from safetensors.numpy import load as load_bytes

        from conceptlens.exceptions import MissingFileError

        folder = user_path(path)
        meta_file, tensor_file = folder / _META_FILE, folder / _TENSOR_FILE
        for f in (meta_file, tensor_file):
            if not f.is_file():
                raise MissingFileError(
                    f"{f} does not exist; {folder} is not a folder written by "
                    "ConceptSegmenter.save"
                )
        fix = "save the segmenter again with ConceptSegmenter.save"
        meta = read_json(meta_file, what="segmenter description", fix=fix)

        def field(key: str, types: Any, what: str) -> Any:
            if not isinstance(meta, dict) or key not in meta:
                raise DataError(f"{meta_file}: field {key!r} is missing ({what}); {fix}")
            v = meta[key]
            if isinstance(v, bool) or not isinstance(v, types):
                raise DataError(f"{meta_file}: field {key!r} must be {what}, got {v!r}")
            return v

        if field("kind", str, "a string") != "ConceptSegmenter":
            raise DataError(f"{meta_file}: not a ConceptSegmenter description; {fix}")
        if field("format", int, "an int") != _FORMAT:
            old = meta["format"] < _FORMAT
            raise DataError(
                f"{meta_file}: format {meta['format']} is not the {_FORMAT} this version "
                "reads; "
                + (
                    "it was written by an older conceptlens, without the concepts' pixel "
                    "priors (format 2 adds them); fit the segmenter again and save it"
                    if old
                    else "it was written by a newer conceptlens; upgrade conceptlens"
                )
            )
        params = field("params", dict, "an object of constructor parameters")
        try:
            seg = cls(**params)
            seg._check_params()
        except (TypeError, ConfigError) as exc:
            raise DataError(f"{meta_file}: invalid 'params' ({exc}); {fix}") from None
        concepts = field("concepts", list, "a list of concept names")
        if not concepts or not all(isinstance(c, str) for c in concepts):
            raise DataError(f"{meta_file}: 'concepts' must be a non-empty list of names")
        try:
            arrays = load_bytes(tensor_file.read_bytes())
        except Exception as exc:  # SafetensorError and friends: a damaged file
            raise DataError(
                f"{tensor_file}: not a readable safetensors file ({type(exc).__name__}); {fix}"
            ) from None
        bad = [k for k, v in arrays.items() if not np.isfinite(v).all()]
        if bad:
            raise DataError(f"{tensor_file}: arrays {bad} hold NaN or infinite values; {fix}")
        seg.concepts_ = list(concepts)
        seg.backbone_ = field("backbone", str, "a string")
        seg.image_size_ = field("image_size", int, "an int")
        seg.grid_ = field("grid", int, "an int")
        seg.token_dim_ = field("token_dim", int, "an int")
        seg.n_pca_ = field("n_pca", int, "an int")
        seg.sigmas_ = [float(s) for s in field("sigmas", list, "a list of scales")]
        seg.bank_concepts_ = list(field("bank_concepts", list, "a list of names"))
        seg.bank_id_ = params.get("bank") or ""
        seg.n_train_images_ = field("n_train_images", int, "an int")
        seg.n_train_pixels_ = field("n_train_pixels", dict, "an object")
        prior = field("pixel_prior", dict, "an object concept -> pixel prior")
        if set(prior) != set(concepts) or not all(
            isinstance(v, float) and 0 < v < 1 for v in prior.values()
        ):
            raise DataError(
                f"{meta_file}: 'pixel_prior' must give every concept a fraction in (0, 1); {fix}"
            )
        seg.pixel_prior_ = {c: float(prior[c]) for c in concepts}
        seg.fit_seconds_ = float(field("fit_seconds", (int, float), "a number"))
        seg.n_iter_ = field("n_iter", dict, "an object")
        seg.final_gradient_ = field("final_gradient", dict, "an object")
        seg.pca_mean_ = arrays.get("pca_mean")
        seg.pca_components_ = arrays.get("pca_components")
        seg.directions_ = arrays.get("directions")
        seg.feature_names_ = seg._feature_names(seg.token_dim_)
        if seg.feature_names_ != field("feature_names", list, "a list of names"):
            raise DataError(f"{meta_file}: 'feature_names' do not match the parameters; {fix}")
        keys = ("w", "b") if seg.classifier == "logistic" else ("w1", "b1", "w2", "b2")
        n_feat, k, h = len(seg.feature_names_), len(concepts), int(seg.hidden)
        want = {
            "feature_mean": (n_feat,),
            "feature_scale": (n_feat,),
            **({"w": (k, n_feat), "b": (k,)} if seg.classifier == "logistic" else {}),
            **(
                {"w1": (k, n_feat, h), "b1": (k, h), "w2": (k, h), "b2": (k,)}
                if seg.classifier == "mlp"
                else {}
            ),
        }
        if seg._uses_tokens():
            want["pca_mean"] = (seg.token_dim_,)
            want["pca_components"] = (seg.n_pca_, seg.token_dim_)
            if seg.bank_concepts_:
                want["directions"] = (len(seg.bank_concepts_), seg.token_dim_)
        got = {k.removeprefix("clf_"): v for k, v in arrays.items()}
        for name, shape in want.items():
            if name not in got or got[name].shape != shape:
                raise DataError(
                    f"{tensor_file}: array {name!r} should have shape {shape}, got "
                    f"{None if name not in got else got[name].shape}; {fix}"
                )
        seg.weights_ = {key: got[key] for key in keys}
        seg.feature_mean_, seg.feature_scale_ = got["feature_mean"], got["feature_scale"]
        return seg
