"""Registry of named backbones: one JSON config per backbone in ``configs/``.

As open_clip keeps one ``model_configs/<name>.json`` per architecture, conceptlens keeps
one file per *backbone* (architecture + weights + the preprocessing and prompt templates
the weights expect). A lookup that misses raises :class:`UnknownNameError` listing the
names that exist.

Users add their own backbones without editing the package, as with open_clip's
``add_model_config``: :func:`add_backbone_config` registers a config file (or a folder of
them) for this process, and every ``*.json`` in the folders listed in the environment
variable ``CONCEPTLENS_BACKBONE_CONFIGS`` (separated by ``os.pathsep``) is registered
when the registry is first read. Both are validated exactly like the shipped configs.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conceptlens._io import read_json
from conceptlens._text import fills_once
from conceptlens.exceptions import ConfigError, UnknownNameError

__all__ = [
    "CONFIGS_ENV",
    "BackboneConfig",
    "add_backbone_config",
    "get_backbone_config",
    "list_backbones",
]

CONFIG_DIR = Path(__file__).parent / "configs"
CONFIGS_ENV = "CONCEPTLENS_BACKBONE_CONFIGS"
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
            if not isinstance(tpl, list | tuple) or not tpl or not all(fills_once(t) for t in tpl):
                raise ConfigError(
                    f"{source}: 'templates' must be a non-empty list of strings containing '{{}}' "
                    "once and no other braces (a literal brace is '{{' or '}}')"
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


def _read_config(path: Path) -> BackboneConfig:
    """One config file, validated; its name must be the file name."""
    data = read_json(
        path, what="backbone config", fix="fix or remove the file.", error=ConfigError
    )
    if isinstance(data, dict) and isinstance(data.get("model"), str):
        model = data["model"]
        # a relative local-dir: folder is relative to the config file
        if model.startswith("local-dir:") and not Path(model[10:]).expanduser().is_absolute():
            data = {**data, "model": "local-dir:" + str((path.parent / model[10:]).resolve())}
    cfg = BackboneConfig.from_dict(data, source=str(path))
    if cfg.name != path.stem:
        raise ConfigError(
            f"{path}: 'name' {cfg.name!r} must match the file name (rename the file to "
            f"{cfg.name}.json or change 'name' to {path.stem!r})"
        )
    return cfg


def _config_files(path: Path, what: str) -> list[Path]:
    if path.is_dir():
        return sorted(path.glob("*.json"))
    if path.is_file():
        return [path]
    raise ConfigError(f"{what} {path} does not exist; give a .json config file or a folder")


@functools.cache
def _shipped() -> dict[str, BackboneConfig]:
    return {cfg.name: cfg for cfg in map(_read_config, sorted(CONFIG_DIR.glob("*.json")))}


@functools.cache
def _from_env(value: str) -> dict[str, BackboneConfig]:
    out: dict[str, BackboneConfig] = {}
    for folder in filter(None, value.split(os.pathsep)):
        for path in _config_files(Path(folder).expanduser(), f"${CONFIGS_ENV} entry"):
            cfg = _read_config(path)
            if cfg.name in _shipped() or cfg.name in out:
                raise ConfigError(
                    f"{path}: backbone {cfg.name!r} is already registered; give your config "
                    "another name"
                )
            out[cfg.name] = cfg
    return out


# added with add_backbone_config, in this process
_ADDED: dict[str, BackboneConfig] = {}


def _configs() -> dict[str, BackboneConfig]:
    return {**_shipped(), **_from_env(os.environ.get(CONFIGS_ENV, "")), **_ADDED}


def add_backbone_config(path: str | os.PathLike[str], *, overwrite: bool = False) -> list[str]:
    """Register the backbone config file ``path`` (or every ``*.json`` in a folder).

    A config is one JSON object with the fields of :class:`BackboneConfig` (see the
    shipped ones in ``conceptlens/backbones/configs/``), validated like them; its
    ``name`` must be the file name. A relative ``local-dir:`` model folder is read
    relative to the config file. For configs that should always be there, put them in a
    folder named by the environment variable ``CONCEPTLENS_BACKBONE_CONFIGS``.

    Parameters
    ----------
    path : path
        A ``.json`` config file or a folder of them.
    overwrite : bool, default False
        Replace a backbone of the same name added earlier in this process (shipped and
        environment configs are never replaced).

    Returns
    -------
    list of str
        The names registered.

    Raises
    ------
    ConfigError
        The file does not exist, is not valid JSON, has a wrong field (named in the
        message) or names a backbone that is already registered.

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> cfg = {"name": "my-clip", "loader": "open_clip", "model": "local-dir:my-clip"}
    >>> _ = (folder / "my-clip.json").write_text(json.dumps(cfg))
    >>> add_backbone_config(folder / "my-clip.json")
    ['my-clip']
    >>> get_backbone_config("my-clip").model.endswith("my-clip")
    True
    """
    files = _config_files(Path(path).expanduser(), "backbone config")
    configs = [_read_config(p) for p in files]
    existing = {**_shipped(), **_from_env(os.environ.get(CONFIGS_ENV, ""))}
    for p, cfg in zip(files, configs, strict=True):
        if cfg.name in existing or (cfg.name in _ADDED and not overwrite):
            raise ConfigError(
                f"{p}: backbone {cfg.name!r} is already registered; give your config another "
                "name" + ("" if cfg.name in existing else " or pass overwrite=True")
            )
    for cfg in configs:
        _ADDED[cfg.name] = cfg
    return [cfg.name for cfg in configs]


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
            "'hf-hub:org/repo', or register a config with add_backbone_config(path) or "
            f"${CONFIGS_ENV}."
        )
    return configs[name]
