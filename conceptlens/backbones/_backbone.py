"""The :class:`Backbone`: one open_clip model with its tokenizer, preprocessing and device.

Encoding runs under ``torch.inference_mode`` on the best device available (CUDA, then
MPS, then CPU), with bf16/fp16 autocast on accelerators, batches sized to fit memory (a
manual ``batch_size`` always wins) and, for :class:`~conceptlens.data.ImageDataset`
inputs, image decoding in DataLoader workers with pinned memory on CUDA.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from conceptlens._io import sha256_file
from conceptlens._progress import progress
from conceptlens.backbones._dense import TOKEN_PATHS, last_block_dense
from conceptlens.backbones._loading import LoadedModel, build_model, resolve_spec
from conceptlens.backbones._registry import DEFAULT_BACKBONE, BackboneConfig
from conceptlens.backbones._shift import check_shifts, shift_offsets, shifted_tokens
from conceptlens.backbones._zoom import (
    check_zoom,
    tile_layout,
    zoomed_preprocessor,
    zoomed_tokens,
)
from conceptlens.exceptions import ConfigError, DataError

__all__ = ["Backbone", "ImageSource", "as_image_source", "image_key", "load_backbone", "text_key"]

_PRECISIONS = ("fp32", "bf16", "fp16")
_WEIGHT_HASHES: dict[tuple[str, int, int], str] = {}


# --------------------------------------------------------------------------- helpers
def text_key(text: str) -> str:
    """Content key of a prompt as the text tower sees it (template already applied).

    Examples
    --------
    >>> text_key("a photo of hair") == text_key("a photo of hair") != text_key("hair")
    True
    """
    return hashlib.sha256(b"text|" + text.encode("utf-8")).hexdigest()


def image_key(image: np.ndarray) -> str:
    """Content key of a decoded image: sha256 of its shape and uint8 bytes.

    Examples
    --------
    >>> import numpy as np
    >>> key = image_key(np.zeros((2, 2, 3), np.uint8))
    >>> len(key), key == image_key(np.zeros((2, 2, 3), np.uint8))
    (64, True)
    """
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256(("x".join(map(str, arr.shape)) + "|" + arr.dtype.str + "|").encode())
    h.update(arr.data)
    return h.hexdigest()


def _to_uint8_image(img: Any, where: str) -> np.ndarray:
    if hasattr(img, "convert") and hasattr(img, "size"):  # PIL image
        img = np.asarray(img.convert("RGB"))
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise DataError(
            f"{where}: images must be uint8 (H, W, 3), got dtype {arr.dtype}; convert with "
            "np.clip(x * 255, 0, 255).astype(np.uint8) for [0, 1] floats"
        )
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"{where}: images must have shape (H, W, 3), got {arr.shape}")
    return arr


def _is_dataset(obj: Any) -> bool:
    return hasattr(obj, "load_image") and hasattr(obj, "ids") and hasattr(obj, "__len__")


class ImageSource:
    """Length and ``source[i] -> uint8 (H, W, 3)`` over any supported image input.

    Build one with :func:`as_image_source`. Nothing is decoded or converted up front: a
    dataset decodes image ``i`` when it is read, a list converts its ``i``-th PIL image
    when it is read, so passing one source to several calls (one per block of indices)
    costs no extra work and holds no extra copies. Picklable (DataLoader workers).
    """

    def __init__(self, images: Any) -> None:
        self.is_dataset = _is_dataset(images)
        if self.is_dataset:
            self._items: Any = images
            self._n = len(images)
        elif isinstance(images, np.ndarray):
            if images.ndim == 3:
                images = images[None]
            if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
                raise DataError(
                    "image arrays must be uint8 with shape (H, W, 3) or (N, H, W, 3), got "
                    f"{images.dtype} {images.shape}"
                )
            self._items = images
            self._n = len(images)
        elif isinstance(images, Sequence) or hasattr(images, "__iter__"):
            self._items = images if isinstance(images, Sequence) else list(images)
            self._n = len(self._items)
        else:
            raise DataError(
                f"cannot encode {type(images).__name__}: pass a list of PIL images, a uint8 "
                "array (H, W, 3) / (N, H, W, 3) or an ImageDataset"
            )

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> np.ndarray:
        if self.is_dataset:
            return self._items.load_image(i)
        if isinstance(self._items, np.ndarray):
            return self._items[i]
        return _to_uint8_image(self._items[i], f"image {i}")


def as_image_source(images: Any) -> ImageSource:
    """An indexable view ``i -> uint8 (H, W, 3)`` of any input the encoders take.

    Parameters
    ----------
    images : ImageDataset, uint8 array (H, W, 3) or (N, H, W, 3), list of PIL images or
        arrays, or an :class:`ImageSource` (returned as it is).

    Returns
    -------
    ImageSource
        ``len(source)`` images; ``source[i]`` is image ``i`` as uint8 (H, W, 3), read or
        converted when it is accessed.

    Examples
    --------
    >>> src = as_image_source(np.zeros((4, 8, 8, 3), np.uint8))
    >>> len(src), src[3].shape, as_image_source(src) is src
    (4, (8, 8, 3), True)
    """
    return images if isinstance(images, ImageSource) else ImageSource(images)


class Preprocessor:
    """Picklable batch preprocessing: uint8 (H, W, 3) images -> normalised (N, 3, S, S).

    ``shortest``: resize the shorter side to ``S`` then centre-crop; ``squash``: resize to
    ``S x S``. Resampling is antialiased; images already ``S x S`` are not resampled.
    """

    def __init__(self, config: BackboneConfig) -> None:
        self.size = int(config.image_size)
        self.mean = torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(config.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.mode = config.interpolation
        self.resize_mode = config.resize_mode

    #: ``shortest`` mode keeps only the central square, so the long side of a more
    #: elongated image is centre-cropped to this multiple of the short side first (same
    #: pixels used; a 1 x 20,000 strip no longer resizes to 96 x 1,920,000).
    max_aspect_ratio = 4.0

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        s = self.size
        h, w = x.shape[-2:]
        if (h, w) == (s, s):
            return x
        if self.resize_mode != "squash" and max(h, w) > self.max_aspect_ratio * min(h, w):
            keep = int(self.max_aspect_ratio * min(h, w))
            keep += (max(h, w) - keep) % 2  # an even margin keeps the crop centred exactly
            start = (max(h, w) - keep) // 2
            x = x[..., start : start + keep, :] if h > w else x[..., start : start + keep]
            h, w = x.shape[-2:]
        if self.resize_mode == "squash":
            new = (s, s)
        else:
            # as torchvision's Resize(int): shorter side -> s, longer side truncated
            new = (s, max(s, int(s * w / h))) if h <= w else (max(s, int(s * h / w)), s)
        kw: dict[str, Any] = {"mode": self.mode}
        if self.mode != "nearest":
            kw.update(align_corners=False, antialias=True)
        x = F.interpolate(x, size=new, **kw).clamp_(0.0, 1.0)
        top, left = (new[0] - s) // 2, (new[1] - s) // 2
        return x[..., top : top + s, left : left + s]

    def __call__(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        if not len(images):
            return torch.empty(0, 3, self.size, self.size)
        shapes = {im.shape for im in images}
        if len(shapes) == 1:
            x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
            x = self._resize(x)
        else:
            x = torch.cat(
                [
                    self._resize(torch.from_numpy(im).permute(2, 0, 1)[None].float().div_(255.0))
                    for im in images
                ]
            )
        return ((x - self.mean) / self.std).contiguous()


class _BatchSource(torch.utils.data.Dataset):
    """Batch ``b`` -> (content keys, preprocessed tensor or raw images), for DataLoader."""

    def __init__(
        self,
        source: ImageSource,
        index_batches: list[np.ndarray],
        preprocess: Preprocessor | None,
        with_keys: bool,
    ) -> None:
        self.source = source
        self.index_batches = index_batches
        self.preprocess = preprocess
        self.with_keys = with_keys

    def __len__(self) -> int:
        return len(self.index_batches)

    def __getitem__(self, b: int) -> tuple[list[str], Any]:
        imgs = [
            _to_uint8_image(self.source[int(i)], f"sample {int(i)}") for i in self.index_batches[b]
        ]
        keys = [image_key(im) for im in imgs] if self.with_keys else []
        if self.preprocess is None:
            return keys, imgs
        return keys, self.preprocess(imgs)


def _collate_identity(x: Any) -> Any:
    return x


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA, then MPS, then CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _weights_hash(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _WEIGHT_HASHES:
        _WEIGHT_HASHES[key] = sha256_file(path)
    return _WEIGHT_HASHES[key]


def _state_dict_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# --------------------------------------------------------------------------- Backbone
class Backbone:
    """A loaded vision-language backbone ready to encode images and text.

    Build one with :func:`load_backbone`. Embeddings are float32 numpy arrays, L2
    normalised unless ``normalize=False``.

    Attributes
    ----------
    name : str
        Registry name, ``hf-hub:`` id, ``local-dir:`` folder or ``file:`` checkpoint.
    config : BackboneConfig
    model : open_clip.CLIP or open_clip.CustomTextCLIP
    tokenizer : callable
        list of str -> LongTensor (T, context_length).
    device : torch.device
    precision : {"fp32", "bf16", "fp16"}
    embed_dim : int
    image_size : int
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        device: str | torch.device | None = None,
        precision: str | None = None,
        batch_size: int | None = None,
        num_workers: int | None = None,
    ) -> None:
        self.config = loaded.config
        self.name = loaded.config.name
        self.tokenizer = loaded.tokenizer
        self.weights_path = loaded.weights_path
        self._extra_hashes = dict(getattr(loaded, "extra_hashes", {}) or {})
        self.device = pick_device(device)
        if precision is None:
            if self.device.type == "cuda":
                precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            elif self.device.type == "mps":
                precision = "fp16"
            else:
                precision = "fp32"
        if precision not in _PRECISIONS:
            raise ConfigError(f"precision {precision!r} is not one of {_PRECISIONS}")
        self.precision = precision
        self.model = loaded.model.to(self.device).eval()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._preprocessor = Preprocessor(self.config)
        self._fingerprint: str | None = None
        # formatted prompt -> raw (unnormalised) text embedding; same weights, same vector
        self._text_memo: dict[str, np.ndarray] = {}
        # images pushed through the image tower, s*s per image with shifts (cache tests)
        self.n_image_encodes = 0
        self._grid: tuple[int, int] | None = None  # token grid at image_size (shifts)
        self.spec: dict[str, Any] | None = None  # how to load it again (Dask workers)

    def __repr__(self) -> str:
        return (
            f"Backbone(name={self.name!r}, device={self.device.type!r}, "
            f"precision={self.precision!r}, embed_dim={self.embed_dim}, "
            f"image_size={self.image_size})"
        )

    # ------------------------------------------------------------------ properties
    @property
    def image_size(self) -> int:
        """Square input size of the image tower, in pixels."""
        return int(self.config.image_size)

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint image-text embedding space."""
        dim = getattr(self.model, "embed_dim", None)
        if dim is None:
            with torch.inference_mode():
                dim = self.model.encode_text(self.tokenizer(["x"]).to(self.device)).shape[-1]
            self.model.embed_dim = int(dim)
        return int(dim)

    @property
    def fingerprint(self) -> str:
        """Cache key: backbone id + weights hash + preprocessing + numeric precision."""
        if self._fingerprint is None:
            if self.weights_path is not None:
                weights = "sha256:" + _weights_hash(Path(self.weights_path))
            else:
                weights = "state:" + _state_dict_hash(self.model)
            payload = {
                "backbone": self.name,
                "weights": weights,
                "preprocessing": self.config.preprocessing,
                "precision": self.precision,
            }
            if self._extra_hashes:  # e.g. the MiniLM text tower files of synthderm-lit
                payload["files"] = self._extra_hashes
            blob = json.dumps(payload, sort_keys=True).encode()
            self._fingerprint = f"{_slug(self.name)}-{hashlib.sha256(blob).hexdigest()[:32]}"
        return self._fingerprint

    # ------------------------------------------------------------------ internals
    def _autocast(self) -> Any:
        if self.precision == "fp32":
            return torch.autocast(device_type=self.device.type, enabled=False)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _auto_batch_size(self) -> int:
        if self.batch_size is not None:
            return int(self.batch_size)
        if self.device.type != "cuda":
            return int(max(8, min(256, 64 * (224 / self.image_size) ** 2)))
        # measure the peak memory of a small batch and fill ~60% of what is free
        probe = 8
        x = torch.zeros(probe, 3, self.image_size, self.image_size, device=self.device)
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        with torch.inference_mode(), self._autocast():
            self.model.encode_image(x)
        per_image = max(1, (torch.cuda.max_memory_allocated(self.device) - base) // probe)
        free, _ = torch.cuda.mem_get_info(self.device)
        self.batch_size = int(max(8, min(2048, 0.6 * free // per_image)))
        return self.batch_size

    def _image_forward(self, x: torch.Tensor, normalize: bool) -> np.ndarray:
        x = x.to(self.device, non_blocking=True)
        try:
            with torch.inference_mode(), self._autocast():
                feats = self.model.encode_image(x).float()
        except torch.OutOfMemoryError:
            if x.shape[0] == 1:
                raise
            torch.cuda.empty_cache()
            half = x.shape[0] // 2
            self.batch_size = max(1, half)
            return np.concatenate(
                [
                    self._image_forward(x[:half], normalize),
                    self._image_forward(x[half:], normalize),
                ]
            )
        self.n_image_encodes += x.shape[0]
        if normalize:
            feats = F.normalize(feats, dim=-1)
        return feats.cpu().numpy().astype(np.float32, copy=False)

    def iter_batches(
        self,
        images: Any,
        *,
        batch_size: int | None = None,
        indices: np.ndarray | None = None,
        preprocess: bool = True,
        with_keys: bool = False,
        num_workers: int | None = None,
    ) -> Iterator[tuple[np.ndarray, list[str], Any]]:
        """Yield ``(indices, keys, batch)`` over ``images`` (decoded in DataLoader workers).

        ``batch`` is the preprocessed tensor (``preprocess=True``) or the list of uint8
        images; ``keys`` are :func:`image_key` content hashes when ``with_keys``.
        """
        src = as_image_source(images)
        bs = int(batch_size or self._auto_batch_size())
        idx = np.arange(len(src)) if indices is None else np.asarray(indices, dtype=np.int64)
        batches = [idx[i : i + bs] for i in range(0, len(idx), bs)]
        workers = num_workers if num_workers is not None else self.num_workers
        if workers is None:
            workers = 0 if self.device.type == "cpu" or not src.is_dataset else 4
            workers = min(workers, max(0, (os.cpu_count() or 1) - 1))
        batch_source = _BatchSource(
            src, batches, self._preprocessor if preprocess else None, with_keys
        )
        loader = torch.utils.data.DataLoader(
            batch_source,
            batch_size=None,
            shuffle=False,
            num_workers=workers,
            collate_fn=_collate_identity,
            pin_memory=self.device.type == "cuda" and preprocess,
            persistent_workers=False,
        )
        bars = progress(loader, total=len(batches), desc="encoding images", unit="batch")
        for b, (keys, batch) in enumerate(bars):
            yield batches[b], keys, batch

    # ------------------------------------------------------------------ public API
    def preprocess(self, images: Any) -> torch.Tensor:
        """Resize, crop and normalise images into the model's input tensor.

        Parameters
        ----------
        images : list of PIL.Image, uint8 array (H, W, 3) or (N, H, W, 3), or ImageDataset

        Returns
        -------
        torch.Tensor
            float32, shape (N, 3, image_size, image_size), on the CPU.
        """
        src = as_image_source(images)
        return self._preprocessor([src[i] for i in range(len(src))])

    def open_cache(
        self, cache: Any, *, kind: str = "image", row_shape: Sequence[int] | None = None
    ) -> Any:
        """The :class:`~conceptlens.backbones.EmbeddingCache` of this backbone in ``cache``.

        Parameters
        ----------
        cache : path or EmbeddingCache
            Cache folder (shared by every backbone; each fingerprint gets a sub-folder), or
            an already open cache of this backbone (another ``kind`` opens its sibling).
        kind : {"image", "patch", "text"}, default "image"
        row_shape : tuple of int, optional
            Shape of one entry; default ``(embed_dim,)``.

        Raises
        ------
        ConfigError
            An open cache of another backbone.
        """
        from conceptlens.backbones._cache import EmbeddingCache

        if isinstance(cache, EmbeddingCache):
            if cache.fingerprint != self.fingerprint:
                raise ConfigError(
                    f"the embedding cache was opened for {cache.fingerprint!r}, not for this "
                    f"backbone ({self.fingerprint!r}); pass the cache folder instead"
                )
            if cache.kind == kind and (row_shape is None or cache.row_shape == tuple(row_shape)):
                return cache
            cache = cache.root  # the same folder, another kind of entry
        shape = tuple(row_shape) if row_shape is not None else (self.embed_dim,)
        return EmbeddingCache(cache, self.fingerprint, row_shape=shape, kind=kind)

    def _read_through(
        self,
        store: Any,
        images: Any,
        forward: Any,
        *,
        batch_size: int | None,
        indices: np.ndarray | None,
        num_workers: int | None,
        preprocessor: Preprocessor | None = None,
    ) -> np.ndarray:
        """Rows of ``images`` from ``store``; missing ones computed by ``forward`` and added.

        Cached images are read, not encoded; the missing ones of each batch are
        preprocessed and encoded together (identical images in a batch once) and appended
        to the cache after every batch, so an interrupted run keeps its progress.
        ``preprocessor`` replaces the backbone's own (zoomed inference).
        """
        pre = preprocessor if preprocessor is not None else self._preprocessor
        out = []
        with store.writer() as writer:
            for _, keys, imgs in self.iter_batches(
                images,
                batch_size=batch_size,
                indices=indices,
                preprocess=False,
                with_keys=True,
                num_workers=num_workers,
            ):
                found = store.contains(keys)
                rows = np.empty((len(keys), *store.row_shape), np.float32)
                if found.any():
                    rows[found] = store.get([k for k, f in zip(keys, found, strict=True) if f])
                miss = np.flatnonzero(~found)
                if len(miss):
                    uniq: dict[str, int] = {}
                    for i in miss:
                        uniq.setdefault(keys[i], int(i))
                    new = forward(pre([imgs[i] for i in uniq.values()]))
                    writer.append(list(uniq), new)
                    lookup = dict(zip(uniq, new, strict=True))
                    for i in miss:
                        rows[i] = lookup[keys[i]]
                out.append(rows)
        if not out:
            return np.zeros((0, *store.row_shape), np.float32)
        return np.concatenate(out)

    def encode_images(
        self,
        images: Any,
        *,
        batch_size: int | None = None,
        normalize: bool = True,
        num_workers: int | None = None,
        cache: Any = None,
        indices: np.ndarray | None = None,
    ) -> np.ndarray:
        """Embed images into the joint space, through the embedding cache if given.

        Parameters
        ----------
        images : list of PIL.Image, uint8 array (H, W, 3) or (N, H, W, 3), ImageDataset
            or :class:`ImageSource`
        batch_size : int, optional
            Images per forward pass; default: chosen to fit memory.
        normalize : bool, default True
            L2-normalise each embedding (the cache holds normalised embeddings only).
        num_workers : int, optional
            DataLoader workers decoding an ImageDataset (default 0 on CPU, 4 on GPU).
        cache : path or EmbeddingCache, optional
            Cached images (same content, same backbone fingerprint) are read, not encoded;
            the others are encoded and added after every batch.
        indices : array of int, optional
            Embed ``images[indices]`` only.

        Returns
        -------
        numpy.ndarray
            float32, shape (N, embed_dim).

        Examples
        --------
        >>> bb = load_backbone("synthderm-lit")  # doctest: +SKIP
        >>> bb.encode_images(np.zeros((2, 96, 96, 3), np.uint8)).shape  # doctest: +SKIP
        (2, 384)
        """
        if cache is not None:
            if not normalize:
                raise ConfigError(
                    "the embedding cache holds L2-normalised embeddings; pass normalize=True "
                    "or cache=None"
                )
            return self._read_through(
                self.open_cache(cache),
                images,
                lambda x: self._image_forward(x, True),
                batch_size=batch_size,
                indices=indices,
                num_workers=num_workers,
            )
        out = [
            self._image_forward(batch, normalize)
            for _, _, batch in self.iter_batches(
                images, batch_size=batch_size, indices=indices, num_workers=num_workers
            )
        ]
        if not out:
            return np.zeros((0, self.embed_dim), np.float32)
        return np.concatenate(out)

    def encode_text(
        self,
        texts: str | Sequence[str],
        *,
        templates: Sequence[str] | None = None,
        normalize: bool = True,
        batch_size: int = 256,
        cache: Any = None,
    ) -> np.ndarray:
        """Embed texts; with ``templates``, each text is the ensemble of its templated forms.

        Each templated prompt is embedded and L2-normalised, the embeddings of one text are
        averaged, and the mean is renormalised (CLIP's prompt ensembling).

        Parameters
        ----------
        texts : str or list of str
        templates : list of str, optional
            Format strings with one ``{}``, e.g. ``["a dermoscopy image of {}"]``.
        normalize : bool, default True
            L2-normalise the result.
        batch_size : int, default 256
            Prompts per forward pass.
        cache : path or EmbeddingCache, optional
            Embedding cache folder: each templated prompt is encoded once per backbone
            fingerprint and reused by later runs. Within one :class:`Backbone` prompts are
            always memoised in memory.

        Returns
        -------
        numpy.ndarray
            float32, shape (T, embed_dim).

        Examples
        --------
        >>> bb.encode_text(["hair"], templates=["{}", "a photo of {}"]).shape  # doctest: +SKIP
        (1, 384)
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        tpls = list(templates) if templates else ["{}"]
        for t in tpls:
            if "{}" not in t:
                raise ConfigError(f"prompt template {t!r} must contain '{{}}'")
        prompts = [t.format(text) for text in texts for t in tpls]
        if not prompts:
            return np.zeros((0, self.embed_dim), np.float32)
        feats = torch.from_numpy(self._raw_text(prompts, batch_size, cache)).to(self.device)
        if len(tpls) > 1 or normalize:
            feats = F.normalize(feats, dim=-1)
        emb = feats.view(len(texts), len(tpls), -1).mean(dim=1)
        if normalize:
            emb = F.normalize(emb, dim=-1)
        return emb.cpu().numpy().astype(np.float32, copy=False)

    def _encode_prompts(self, prompts: list[str], batch_size: int) -> np.ndarray:
        """Raw text-tower outputs (P, D) of ``prompts``, in order.

        Text towers that mask padding (Hugging Face towers: synthderm-lit, BiomedCLIP) get
        no padding at all: prompts are grouped by token length and each group is cut to
        its length, so a prompt costs its own length, not the context length, and its
        embedding never depends on the other prompts of its batch. Towers with a fixed
        positional table (open_clip's own CLIP text transformer) get the tokenizer's full
        context, as in training.
        """
        tokens = self.tokenizer(prompts)
        pad = getattr(
            getattr(getattr(self.model, "text", None), "config", None), "pad_token_id", None
        )
        if pad is None:  # fixed-length tower
            order, groups = np.arange(len(prompts)), [(np.arange(len(prompts)), tokens.shape[1])]
        else:
            used = (tokens != pad).long()
            lengths = (used.shape[1] - used.flip(1).argmax(1)).numpy()  # last non-pad + 1
            lengths[used.sum(1).numpy() == 0] = 1
            groups = [(np.flatnonzero(lengths == n), int(n)) for n in np.unique(lengths)]
            order = np.concatenate([g for g, _ in groups])
        rows: list[np.ndarray] = []
        batches = [
            (idx[i : i + batch_size], length)
            for idx, length in groups
            for i in range(0, len(idx), batch_size)
        ]
        for sel, length in progress(
            batches, total=len(batches), desc="encoding text", unit="batch"
        ):
            part = tokens[sel, :length].to(self.device)
            with torch.inference_mode(), self._autocast():
                f = self.model.encode_text(part).float()
            rows.append(f.cpu().numpy().astype(np.float32, copy=False))
        stacked = np.concatenate(rows)
        out = np.empty_like(stacked)
        out[order] = stacked
        return out

    def _raw_text(self, prompts: Sequence[str], batch_size: int, cache: Any) -> np.ndarray:
        """Unnormalised text-tower outputs (P, D), each prompt encoded once per backbone."""
        memo = self._text_memo
        todo = list(dict.fromkeys(p for p in prompts if p not in memo))
        if todo and cache is not None:
            store = self.open_cache(cache, kind="text")
            keys = [text_key(p) for p in todo]
            found = store.contains(keys)
            if found.any():
                hit = [p for p, f in zip(todo, found, strict=True) if f]
                rows = store.get([k for k, f in zip(keys, found, strict=True) if f])
                memo.update(zip(hit, rows, strict=True))
            todo = [p for p, f in zip(todo, found, strict=True) if not f]
        if todo:
            rows = self._encode_prompts(todo, batch_size)
            if cache is not None:
                with self.open_cache(cache, kind="text").writer() as writer:
                    writer.append([text_key(p) for p in todo], rows)
            memo.update(zip(todo, rows, strict=True))
        return np.stack([memo[p] for p in prompts])

    def _tokens(
        self, x: torch.Tensor, tokens: str = "output"
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """(pooled projected (N, D), projected patch tokens (N, gh, gw, D), grid).

        ``tokens`` other than ``"output"`` re-wire the last block for the patch tokens
        (see :mod:`conceptlens.backbones._dense`); the pooled embedding is unchanged.
        """
        visual = self.model.visual
        if hasattr(visual, "trunk") and hasattr(visual, "head"):  # open_clip TimmModel
            trunk = visual.trunk
            feats = trunk.forward_features(x)
            pooled = visual.head(trunk.forward_head(feats))
            if tokens != "output":
                if feats.ndim == 4:
                    raise ConfigError(
                        f"{self.name}: tokens={tokens!r} needs a ViT trunk, not a convnet"
                    )
                feats = trunk.norm(last_block_dense(trunk, x, tokens))
            if feats.ndim == 4:  # convnet: (N, C, H, W)
                grid = (int(feats.shape[2]), int(feats.shape[3]))
                patches = feats.permute(0, 2, 3, 1).flatten(1, 2)
            else:
                npt = int(getattr(trunk, "num_prefix_tokens", 1))
                patches = feats[:, npt:]
                fc_norm = getattr(trunk, "fc_norm", None)
                if fc_norm is not None:
                    patches = fc_norm(patches)
                g = trunk.patch_embed.grid_size
                grid = (int(g[0]), int(g[1]))
            proj = visual.head(patches)
        elif hasattr(visual, "conv1") and hasattr(visual, "ln_post"):  # open_clip ViT
            if getattr(visual, "attn_pool", None) is not None:
                raise ConfigError(
                    f"{self.name}: patch embeddings are not defined for attention-pooled towers"
                )
            seq = visual.transformer(visual._embeds(x))
            pooled, _ = visual._pool(seq)
            if tokens != "output":
                seq = last_block_dense(visual, x, tokens)
            patches = visual.ln_post(seq[:, 1:])
            if visual.proj is not None:
                pooled = pooled @ visual.proj
                proj = patches @ visual.proj
            else:
                proj = patches
            g = visual.grid_size
            grid = (int(g[0]), int(g[1]))
        else:
            raise ConfigError(
                f"{self.name}: patch embeddings need a ViT image tower (open_clip ViT or a timm "
                f"trunk); this model's image tower is {type(visual).__name__}"
            )
        return pooled, proj.reshape(x.shape[0], grid[0], grid[1], -1), grid

    def _patch_forward(
        self,
        x: torch.Tensor,
        tokens: str = "output",
        shifts: int = 1,
        zoom: int = 1,
        zoom_overlap: int = 0,
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """Patch tokens of preprocessed images (zoomed ones, ``z S x z S``, for ``zoom``)."""
        x = x.to(self.device)
        with torch.inference_mode(), self._autocast():
            if zoom > 1:
                base = self._token_grid()
                patches = zoomed_tokens(
                    lambda v: self._tokens(v, tokens)[1], x, base, zoom, zoom_overlap
                )
                grid = (base[0] * zoom, base[1] * zoom)
            elif shifts == 1:
                _, patches, grid = self._tokens(x, tokens)
            else:
                base = self._token_grid()
                patches = shifted_tokens(lambda v: self._tokens(v, tokens)[1], x, base, shifts)
                grid = (base[0] * shifts, base[1] * shifts)
        return patches.float().cpu().numpy().astype(np.float32, copy=False), grid

    def _token_grid(self) -> tuple[int, int]:
        """The tower's token grid ``(gh, gw)`` at ``image_size`` (one probe, remembered)."""
        if self._grid is None:
            x = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
            with torch.inference_mode(), self._autocast():
                self._grid = self._tokens(x)[2]
        return self._grid

    def _check_shifts(self, shifts: Any) -> int:
        """Validate ``shifts`` for this tower before any work (see :mod:`._shift`)."""
        s = check_shifts(shifts)
        if s > 1:
            shift_offsets(self._patch_pixels("shifted inference (shifts > 1)"), s)
        return s

    def _patch_pixels(self, what: str) -> int:
        """Patch size in pixels; :class:`ConfigError` (naming ``what`` needs it) when the
        patches are not square or do not tile the input."""
        gh, gw = self._token_grid()
        size = self.image_size
        if size % gh or size % gw or size // gh != size // gw:
            raise ConfigError(
                f"{self.name}: {what} needs square patches that tile the {size}-pixel "
                f"input; its token grid is {gh}x{gw}"
            )
        return size // gh

    def _check_zoom(self, zoom: Any, overlap: Any, shifts: int) -> tuple[int, int, int]:
        """Validate ``zoom`` and ``zoom_overlap`` before any work (see :mod:`._zoom`);
        ``(z, overlap, forward passes per image)``."""
        z = check_zoom(zoom)
        if z == 1:
            if overlap != 0:
                raise ConfigError(
                    f"zoom_overlap={overlap!r} needs zoom > 1 (the overlap of zoomed tiles)"
                )
            return 1, 0, 1
        if shifts > 1:
            raise ConfigError(
                f"zoom={z} and shifts={shifts} cannot be combined (shifted copies of a "
                "zoomed image would be reflected at tile borders); use one of them"
            )
        p = self._patch_pixels("zoomed inference (zoom > 1)")
        if z > p:
            raise ConfigError(
                f"zoom={z} would make each token see less than one pixel of the image: "
                f"{self.name} has {p}-pixel patches, so zoom can be at most {p} (a token "
                "then sees one pixel; it costs zoom*zoom passes per image)"
            )
        th, tw = tile_layout(self._token_grid(), z, overlap)
        return z, int(overlap), th * tw

    def patch_embeddings(
        self,
        images: Any,
        *,
        batch_size: int | None = None,
        normalize: bool = False,
        cache: Any = None,
        tokens: str = "output",
        shifts: int = 1,
        zoom: int = 1,
        zoom_overlap: int = 0,
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """ViT patch tokens projected into the joint space, on the patch grid.

        Tokens go through the tower's final norm (``ln_post`` / timm ``norm``) and its
        projection (``proj`` / the open_clip head), as the pooled token does, so a patch
        embedding can be compared with text embeddings. For average-pooled towers the mean
        of the patch embeddings equals the (unnormalised) image embedding.

        Parameters
        ----------
        images : list of PIL.Image, uint8 array (H, W, 3) or (N, H, W, 3), or ImageDataset
        normalize : bool, default False
            L2-normalise each patch embedding.
        cache : path or EmbeddingCache, optional
            Embedding cache folder; patch grids are cached (kind ``patch``) by content,
            read through like :meth:`encode_images`.
        tokens : {"output", "value", "self"}, default "output"
            Which tokens: the tower's output tokens, or dense tokens from a re-wired last
            block that localise better -- ``"value"`` (MaskCLIP: each token's own value
            vector through the attention's output projection, no query-key attention, no
            residual or MLP) or ``"self"`` (ClearCLIP: query-query attention, no residual
            or MLP). Each is cached under its own kind (``patch``, ``patch-value``, ...).
        shifts : int, default 1
            ``s > 1``: a token grid ``s`` times finer in each direction, ``(s gh, s gw)``,
            by shifted inference -- the tower runs on ``s * s`` copies of each image
            moved by fractions ``(k - (s - 1) / 2) / s`` of a patch (borders reflected)
            and their token grids are interleaved, so fine token ``(I, J)`` is centred
            on cell ``(I, J)`` of an ``(s gh) x (s gw)`` grid over the image (see
            :mod:`conceptlens.backbones._shift`). Costs ``s * s`` forward passes per
            image; each token still sees a whole patch. The offsets must be whole
            pixels (``p`` divisible by ``s``, and by ``2 s`` for even ``s``; ``s`` = 2
            or 4 for 8- and 16-pixel patches). Cached under its own kind
            (``patch-s2``, ``patch-value-s2``, ...).
        zoom : int, default 1
            ``z > 1``: tokens that see ``1 / z`` of a patch, on a ``(z gh, z gw)`` grid, by
            zoomed inference -- each image is resized to ``z`` times the input size with
            the backbone's own resampling (bicubic for synthderm-lit), cut into ``z * z``
            tiles of the input size and the tiles' token grids are stitched, so token
            ``(I, J)`` sees the ``p / z``-pixel window of cell ``(I, J)`` of a
            ``(z gh) x (z gw)`` grid over the ``S x S`` image (see
            :mod:`conceptlens.backbones._zoom`). Costs ``z * z`` forward passes per
            image; the tower sees structures ``z`` times larger than in training.
            Not combined with ``shifts``. Cached under its own kind (``patch-z2``,
            ``patch-value-z2``, ``patch-z2o2`` with overlap, ...).
        zoom_overlap : int, default 0
            With ``zoom``: tiles overlap so that every kept token has at least this many
            tokens of context in its tile on each side (borders reflected); tiles keep
            their central ``gh - 2 o`` tokens, which must divide ``z gh``.

        Returns
        -------
        embeddings : numpy.ndarray
            float32, shape (N, gh, gw, embed_dim) (``gh``, ``gw`` times ``shifts`` or
            ``zoom``).
        grid : tuple of int
            ``(gh, gw)``.

        Raises
        ------
        ConfigError
            ``tokens`` unknown; ``shifts`` not a positive int or not giving whole-pixel
            offsets for this tower's patch size; ``zoom`` not a positive int,
            ``zoom_overlap`` not fitting the tiles, or both ``zoom`` and ``shifts``.

        Examples
        --------
        >>> bb = load_backbone("synthderm-lit")  # doctest: +SKIP
        >>> imgs = np.zeros((2, 96, 96, 3), np.uint8)
        >>> bb.patch_embeddings(imgs, shifts=2)[0].shape  # doctest: +SKIP
        (2, 24, 24, 384)
        >>> bb.patch_embeddings(imgs, zoom=2)[0].shape  # doctest: +SKIP
        (2, 24, 24, 384)
        """
        if tokens not in TOKEN_PATHS:
            raise ConfigError(f"tokens must be one of {TOKEN_PATHS}, got {tokens!r}")
        shifts = self._check_shifts(shifts)
        zoom, zoom_overlap, passes = self._check_zoom(zoom, zoom_overlap, shifts)
        pre = zoomed_preprocessor(self._preprocessor, zoom)
        if zoom > 1 and batch_size is None:  # z*z times the pixels per image
            batch_size = max(1, self._auto_batch_size() // (zoom * zoom))
        grid = (0, 0)
        if cache is None:
            out = []
            for _, _, batch in self.iter_batches(
                images, batch_size=batch_size, preprocess=zoom == 1
            ):
                x = batch if zoom == 1 else pre(batch)
                patches, grid = self._patch_forward(x, tokens, shifts, zoom, zoom_overlap)
                out.append(patches)
            if not out:
                raise DataError("patch_embeddings got no images")
            result = np.concatenate(out)
        else:
            # the row shape from one plain pass (not the s*s or z*z of a fine grid)
            size = self.image_size
            plain, (gh, gw) = self._patch_forward(torch.zeros(1, 3, size, size), tokens, 1, 1, 0)
            k = shifts * zoom  # one of them is 1
            grid = (gh * k, gw * k)
            row_shape = (gh * k, gw * k, plain.shape[-1])

            def forward(x: torch.Tensor) -> np.ndarray:
                self.n_image_encodes += x.shape[0] * shifts * shifts * passes
                return self._patch_forward(x, tokens, shifts, zoom, zoom_overlap)[0]

            kind = "patch" if tokens == "output" else f"patch-{tokens}"
            if shifts > 1:
                kind += f"-s{shifts}"
            if zoom > 1:
                kind += f"-z{zoom}" + (f"o{zoom_overlap}" if zoom_overlap else "")
            store = self.open_cache(cache, kind=kind, row_shape=row_shape)
            result = self._read_through(
                store,
                images,
                forward,
                batch_size=batch_size,
                indices=None,
                num_workers=None,
                preprocessor=pre,
            )
            if not len(result):
                raise DataError("patch_embeddings got no images")
        if normalize:
            result /= np.linalg.norm(result, axis=-1, keepdims=True)
        return result, grid

    def image_text_module(self, *, pixel_space: bool = False) -> torch.nn.Module:
        """A differentiable module: image tensor -> L2-normalised joint embedding (N, D).

        Parameters
        ----------
        pixel_space : bool, default False
            If True the module takes [0, 1] RGB tensors (N, 3, S, S) and applies the
            backbone's mean/std itself (what pixel attributions want); otherwise it takes
            the output of :meth:`preprocess`.
        """
        return _ImageEmbedder(self.model, self._preprocessor if pixel_space else None)


class _ImageEmbedder(torch.nn.Module):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: Any, pre: Preprocessor | None) -> None:
        super().__init__()
        self.model: Any = model
        self.pixel_space = pre is not None
        if pre is not None:
            self.register_buffer("mean", pre.mean.clone())
            self.register_buffer("std", pre.std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pixel_space:
            x = (x - self.mean) / self.std
        return F.normalize(self.model.encode_image(x), dim=-1)


def _slug(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.split("/")[-1])
    return keep[:40] or "backbone"


def load_backbone(
    name_or_path: str | os.PathLike[str] | BackboneConfig = DEFAULT_BACKBONE,
    *,
    device: str | torch.device | None = None,
    precision: str | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    architecture: Any = None,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> Backbone:
    """Load a backbone by registry name, checkpoint file, ``local-dir:`` or ``hf-hub:`` id.

    Parameters
    ----------
    name_or_path : str, path or BackboneConfig, default "synthderm-lit"
        A name from :func:`list_backbones`; a ``.safetensors`` / ``.pt`` checkpoint (its
        architecture comes from ``architecture``, its safetensors metadata
        ``open_clip_config`` or an ``open_clip_config.json`` next to it); a folder or
        ``local-dir:/path`` with ``open_clip_config.json`` + weights; or ``hf-hub:org/repo``.
    device : str, optional
        Default: CUDA, then MPS, then CPU.
    precision : {"fp32", "bf16", "fp16"}, optional
        Default: bf16 (fp16 where bf16 is unsupported) on GPU, fp32 on CPU.
    batch_size : int, optional
        Images per forward pass; default chosen to fit memory.
    pretrained : bool, default True
        False builds the architecture with random weights (tests, benchmarks).
    weights : path, optional
        ``synthderm-lit`` only: a weights file written by ``conceptlens backbone
        train-synthderm-lit`` to use instead of the shipped one (its tensors are checked
        for names, shapes and finite values; the shipped file is checked against its
        recorded sha256).
    download : bool, default False
        Let open_clip/huggingface_hub download missing hub weights (with progress bars).
        With ``False`` nothing touches the network: missing weights raise
        :class:`BackboneUnavailableError` at once. Checkpoint files and ``local-dir:``
        folders never use the network unless their Hugging Face text tower files are not
        cached and ``download=True``.

    Raises
    ------
    UnknownNameError
        Unknown name; the message lists the registered backbones.
    BackboneUnavailableError
        Hub weights are not cached and the Hub cannot be reached; raised within seconds,
        the message says how to make the weights available.

    Examples
    --------
    >>> bb = load_backbone("synthderm-lit")
    >>> bb.encode_text(["blue-white veil"]).shape
    (1, 384)
    """
    config, checkpoint = resolve_spec(name_or_path)
    loaded = build_model(
        config,
        checkpoint=checkpoint,
        architecture=architecture,
        pretrained=pretrained,
        weights=weights,
        download=download,
    )
    backbone = Backbone(
        loaded, device=device, precision=precision, batch_size=batch_size, num_workers=num_workers
    )
    if not isinstance(name_or_path, BackboneConfig) and (
        architecture is None or isinstance(architecture, str)
    ):
        backbone.spec = {
            "name_or_path": os.fspath(name_or_path),
            "precision": precision,
            "batch_size": batch_size,
            "architecture": architecture,
            "pretrained": pretrained,
            "weights": None if weights is None else os.fspath(weights),
            "download": download,
        }
    return backbone
