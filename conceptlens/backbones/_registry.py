"""Registry of named backbones: one JSON config per backbone in ``configs/``.

As open_clip keeps one ``model_configs/<name>.json`` per architecture, conceptlens keeps
one file per *backbone* (architecture + weights + the preprocessing and prompt templates
the weights expect). A lookup that misses raises :class:`UnknownNameError` listing the
names that exist.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conceptlens.exceptions import ConfigError, UnknownNameError

__all__ = ["BackboneConfig", "get_backbone_config", "list_backbones"]

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_BACKBONE = "synthderm-lit"

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_LOADERS = ("open_clip", "synthderm-lit")
_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
_RESIZE_MODES = ("shortest", "squash")


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """What a backbone is and what its weights expect.

    Parameters
    ----------
    name : str
        Registry name (``synthderm-lit``, ``biomedclip``...).
    loader : {"open_clip", "synthderm-lit"}
        How the model is built.
    model : str
        open_clip model identifier: a built-in architecture name (``ViT-B-16``), an
        ``hf-hub:org/repo`` id or a ``local-dir:/path`` folder.
    pretrained : str or None
        open_clip pretrained tag (``openai``) for built-in architecture names.
    hub_repo : str or None
        Hugging Face repository holding the weights (what to download when offline).
    tokenizer : str or None
        Tokenizer override (``ViT-L-14`` for KnoBo's models); default: the model's own.
    image_size : int
        Square input size in pixels.
    mean, std : tuple of float
        Per-channel normalisation of [0, 1] RGB pixels.
    interpolation : {"bicubic", "bilinear", "nearest"}
        Resampling used when the input size differs.
    resize_mode : {"shortest", "squash"}
        ``shortest``: resize the shorter side then centre-crop (open_clip's default);
        ``squash``: resize both sides to ``image_size``.
    templates : tuple of str
        Prompt templates the weights were trained or evaluated with (``"{}"`` = prompt).
    """

    name: str
    loader: str
    model: str
    description: str = ""
    pretrained: str | None = None
    hub_repo: str | None = None
    tokenizer: str | None = None
    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    templates: tuple[str, ...] = ("{}",)
    modality: str = ""
    license: str = ""
    url: str | None = None
    citation: str = ""
    notes: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<config>") -> BackboneConfig:
        """Validate a plain mapping (as read from a config JSON) and build a config."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: a backbone config must be a JSON object")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {unknown}; allowed keys are {sorted(fields)}"
            )
        for key in ("name", "loader", "model"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ConfigError(f"{source}: {key!r} must be a non-empty string")
        kw = dict(data)
        if kw["loader"] not in _LOADERS:
            raise ConfigError(f"{source}: loader {kw['loader']!r} is not one of {_LOADERS}")
        if kw.get("interpolation", "bicubic") not in _INTERPOLATIONS:
            raise ConfigError(
                f"{source}: interpolation {kw['interpolation']!r} is not one of {_INTERPOLATIONS}"
            )
        if kw.get("resize_mode", "shortest") not in _RESIZE_MODES:
            raise ConfigError(
                f"{source}: resize_mode {kw['resize_mode']!r} is not one of {_RESIZE_MODES}"
            )
        for key in ("mean", "std"):
            if key in kw:
                val = kw[key]
                if not isinstance(val, list | tuple) or len(val) != 3:
                    raise ConfigError(f"{source}: {key!r} must be a list of 3 numbers")
                kw[key] = tuple(float(v) for v in val)
        if "templates" in kw:
            tpl = kw["templates"]
            if (
                not isinstance(tpl, list | tuple)
                or not tpl
                or not all(isinstance(t, str) and "{}" in t for t in tpl)
            ):
                raise ConfigError(
                    f"{source}: 'templates' must be a non-empty list of strings containing '{{}}'"
                )
            kw["templates"] = tuple(tpl)
        size = kw.get("image_size", 224)
        if not isinstance(size, int) or size <= 0:
            raise ConfigError(f"{source}: 'image_size' must be a positive integer, got {size!r}")
        for key in ("hub_repo", "url", "pretrained", "tokenizer"):
            if kw.get(key) == "":
                kw[key] = None
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable mapping (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key in ("mean", "std", "templates"):
            out[key] = list(out[key])
        return out

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing parameters (part of every cache key)."""
        return {
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
        }


@functools.cache
def _configs() -> dict[str, BackboneConfig]:
    out: dict[str, BackboneConfig] = {}
    for path in sorted(CONFIG_DIR.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON ({exc})") from exc
        cfg = BackboneConfig.from_dict(data, source=str(path))
        if cfg.name != path.stem:
            raise ConfigError(f"{path}: 'name' {cfg.name!r} must match the file name")
        out[cfg.name] = cfg
    return out


def list_backbones() -> list[str]:
    """Names of the registered backbones, sorted.

    Examples
    --------
    >>> "synthderm-lit" in list_backbones()
    True
    """
    return sorted(_configs())


def get_backbone_config(name: str) -> BackboneConfig:
    """Return the registered config of backbone ``name``.

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered; the message lists the known backbones.

    Examples
    --------
    >>> get_backbone_config("synthderm-lit").image_size
    96
    """
    configs = _configs()
    if name not in configs:
        raise UnknownNameError(
            f"unknown backbone {name!r}; known backbones: {', '.join(sorted(configs))}. "
            "You can also pass a checkpoint file, 'local-dir:/path/to/folder' or "
            "'hf-hub:org/repo'."
        )
    return configs[name]
