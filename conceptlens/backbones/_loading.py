"""Build open_clip models for registry names, checkpoint files, local folders and hub ids.

The network is used only when the caller passes ``download=True`` and names a hub
backbone (a registry name with Hugging Face weights, ``hf-hub:org/repo``, or a checkpoint
whose Hugging Face text tower config is not cached). Everything else is resolved offline:
hub weights are looked up in the local Hugging Face cache; a checkpoint file or a
``local-dir:`` folder, and the Hugging Face text config and tokenizer it names, are built
with Hugging Face offline mode forced for the duration of the build (restored afterwards,
so nothing leaks into the rest of the process). When weights are missing a
:class:`~conceptlens.exceptions.BackboneUnavailableError` says how to make them available.
With ``download=True`` an unreachable Hub (probed once with a short timeout) fails within
seconds. Weights are read from safetensors or with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from conceptlens._io import read_json
from conceptlens.backbones._registry import BackboneConfig, get_backbone_config, list_backbones
from conceptlens.exceptions import (
    BackboneUnavailableError,
    ConfigError,
    MissingFileError,
    UnknownNameError,
)

__all__ = [
    "LoadedModel",
    "build_model",
    "download_command",
    "hub_offline",
    "hub_reachable",
    "resolve_spec",
]

_CONFIG_FILE = "open_clip_config.json"
_WEIGHT_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pt",
)
# the Hub's own rule for repository ids: "org/name", each part 1-96 of [A-Za-z0-9_.-],
# not starting or ending with "-" or "." ("--" and ".." are refused separately)
_HUB_PART = r"(?:[A-Za-z0-9_]|[A-Za-z0-9_][A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])"
_HUB_REPO = re.compile(rf"{_HUB_PART}/{_HUB_PART}")
_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_PROBE_TIMEOUT_S = 1.5


@dataclasses.dataclass
class LoadedModel:
    """A built model plus what is needed to fingerprint it."""

    config: BackboneConfig
    model: Any
    tokenizer: Any
    weights_path: Path | None
    source: str
    #: hashes of other files the outputs depend on (e.g. the MiniLM text tower files)
    extra_hashes: dict[str, str] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------- resolution
def resolve_spec(
    name_or_path: str | os.PathLike[str] | BackboneConfig,
) -> tuple[BackboneConfig, Path | None]:
    """Turn what the user passed into a config (and a checkpoint file, for file paths).

    Returns
    -------
    config : BackboneConfig
    checkpoint : Path or None
        Set when ``name_or_path`` is a checkpoint file.
    """
    if isinstance(name_or_path, BackboneConfig):
        return name_or_path, None
    spec = os.fspath(name_or_path)
    if spec in list_backbones():
        return get_backbone_config(spec), None
    if spec.startswith("hf-hub:"):
        repo = spec[len("hf-hub:") :].strip("/")
        if not repo:
            raise ConfigError("empty 'hf-hub:' id; use 'hf-hub:org/repo'")
        if not _HUB_REPO.fullmatch(repo) or ".." in repo or "--" in repo:
            raise ConfigError(
                f"{spec!r} is not a Hugging Face Hub id: use 'hf-hub:org/repo', where org and "
                "repo are letters, digits, '-', '_' or '.' (at most 96 each, not starting or "
                "ending with '-' or '.')"
            )
        return BackboneConfig(name=spec, loader="open_clip", model=spec, hub_repo=repo), None
    if spec.startswith("local-dir:"):
        folder = Path(spec[len("local-dir:") :]).expanduser()
        return _local_dir_config(folder), None
    path = Path(spec).expanduser()
    if path.is_dir():
        return _local_dir_config(path), None
    if path.is_file():
        if path.suffix.lower() not in _CHECKPOINT_SUFFIXES:
            raise ConfigError(
                f"{path}: not a checkpoint file (expected one of {_CHECKPOINT_SUFFIXES})"
            )
        return (
            BackboneConfig(name=f"file:{path.resolve()}", loader="open_clip", model=str(path)),
            path,
        )
    if any(sep in spec for sep in ("/", "\\")) or Path(spec).suffix in _CHECKPOINT_SUFFIXES:
        raise MissingFileError(
            f"backbone checkpoint or folder {spec!r} does not exist; check the path, or use a "
            f"registered name: {', '.join(list_backbones())}"
        )
    raise UnknownNameError(
        f"unknown backbone {spec!r}; known backbones: {', '.join(list_backbones())}. "
        "You can also pass a checkpoint file, 'local-dir:/path/to/folder' or 'hf-hub:org/repo'."
    )


def _local_dir_config(folder: Path) -> BackboneConfig:
    if not folder.is_dir():
        raise MissingFileError(f"backbone folder {folder} does not exist")
    cfg_path = folder / _CONFIG_FILE
    if not cfg_path.is_file():
        raise MissingFileError(
            f"{folder} has no {_CONFIG_FILE}; a 'local-dir:' backbone folder needs "
            f"{_CONFIG_FILE} (with 'model_cfg') and one of {_WEIGHT_FILES}, as "
            f"`{download_command('<org/repo>', '<folder>')}` writes them"
        )
    pp = _read_open_clip_json(cfg_path).get("preprocess_cfg", {})
    return _config_with_preprocess(
        BackboneConfig(
            name=f"local-dir:{folder.resolve()}", loader="open_clip", model=str(folder)
        ),
        pp,
    )


def _read_open_clip_json(path: Path) -> dict[str, Any]:
    data = read_json(
        path,
        what="open_clip config",
        fix="give the open_clip_config.json that came with the weights.",
        error=ConfigError,
    )
    if not isinstance(data, dict) or "model_cfg" not in data:
        raise ConfigError(f"{path}: expected a JSON object with a 'model_cfg' entry")
    return data


def _config_with_preprocess(cfg: BackboneConfig, pp: Mapping[str, Any]) -> BackboneConfig:
    changes: dict[str, Any] = {}
    size = pp.get("size", pp.get("image_size"))
    if isinstance(size, list | tuple):
        size = size[0]
    if isinstance(size, int):
        changes["image_size"] = size
    for key in ("mean", "std"):
        if key in pp and pp[key] is not None:
            changes[key] = tuple(float(v) for v in pp[key])
    if pp.get("interpolation") in ("bicubic", "bilinear", "nearest"):
        changes["interpolation"] = pp["interpolation"]
    if pp.get("resize_mode") in ("shortest", "squash"):
        changes["resize_mode"] = pp["resize_mode"]
    return dataclasses.replace(cfg, **changes)


# --------------------------------------------------------------------------- offline
def _offline_flag() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face endpoint accepts a TCP connection within ``timeout`` s.

    Honours ``HF_HUB_OFFLINE=1`` (then ``False`` without any network call). DNS lookups
    can block for a long time on a closed network, so the probe runs in a daemon thread
    and is abandoned after ``timeout``.
    """
    if _offline_flag():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme != "http" else 80)
    result: list[bool] = []

    def _probe() -> None:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.close()
            result.append(True)
        except Exception:  # any failure (DNS, refused, timeout) means "not reachable"
            result.append(False)

    t = threading.Thread(target=_probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def download_command(repo: str, folder: str) -> str:
    """The shell command of the installed ``huggingface_hub`` that downloads ``repo``.

    ``hf download`` (huggingface_hub 0.34 and later), else ``huggingface-cli download``.

    Example
    -------
    >>> from conceptlens.backbones._loading import download_command
    >>> download_command("org/model", "model").endswith("download org/model --local-dir model")
    True
    """
    cli = "hf"
    try:
        from importlib.metadata import version

        major, minor = (int(x) for x in version("huggingface_hub").split(".")[:2])
        if (major, minor) < (0, 34):
            cli = "huggingface-cli"
    except Exception:  # unknown version: the current command
        pass
    return f"{cli} download {repo} --local-dir {folder}"


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Force huggingface_hub/transformers offline for the duration (no retries).

    ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` and huggingface_hub's cached constant are
    restored on exit, so the user's other Hugging Face code is unaffected.

    Example
    -------
    >>> import os
    >>> from conceptlens.backbones._loading import hub_offline
    >>> before = os.environ.get("HF_HUB_OFFLINE")
    >>> with hub_offline():
    ...     os.environ["HF_HUB_OFFLINE"]
    '1'
    >>> os.environ.get("HF_HUB_OFFLINE") == before
    True
    """
    old_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    consts: Any = None
    old_const = None
    try:
        import huggingface_hub.constants as consts

        old_const = consts.HF_HUB_OFFLINE
        consts.HF_HUB_OFFLINE = True
    except (ImportError, AttributeError):  # pragma: no cover - optional internals
        consts = None
    try:
        yield
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if consts is not None:
            consts.HF_HUB_OFFLINE = old_const


_hub_offline = hub_offline


def _cache_hint() -> str:
    home = os.environ.get("HF_HOME") or "~/.cache/huggingface"
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub")
    return hub


def unavailable_message(
    name: str, repo: str, *, missing: str, model_id: str | None, download: bool = True
) -> str:
    """The message of a :class:`BackboneUnavailableError` for hub weights."""
    if not download:
        why = (
            "downloading was not requested (pass download=True, or --download on the "
            "command line, to let huggingface_hub fetch it"
            + ("; HF_HUB_OFFLINE=1 is also set" if _offline_flag() else "")
            + ")"
        )
    elif _offline_flag():
        why = "HF_HUB_OFFLINE=1 is set"
    else:
        why = "the Hugging Face Hub is unreachable from this machine"
    model_id = model_id or f"hf-hub:{repo}"
    return (
        f"backbone {name!r} needs weights from the Hugging Face Hub repository {repo!r}, "
        f"but {missing} is not in the local Hugging Face cache ({_cache_hint()}) and {why}. "
        "To make it available: (1) on a machine with internet access run "
        f"`{download_command(repo, repo.split('/')[-1])}` "
        '(or `python -c "import open_clip; '
        f"open_clip.create_model_and_transforms('{model_id}')\"` to fill the cache); "
        "(2) copy that folder here and load it with "
        f"load_backbone('local-dir:/path/to/{repo.split('/')[-1]}') "
        f"(CLI: --backbone local-dir:/path/to/{repo.split('/')[-1]}), or copy the whole "
        "Hugging Face cache here and point HF_HOME (or HF_HUB_CACHE) at it. "
        f"`conceptlens backbone check {name}` tells you when it loads."
    )


def _cached_file(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, filename)
    except Exception:
        return None
    return Path(found) if isinstance(found, str) else None


def _require_download(
    cfg: BackboneConfig, repo: str, *, missing: str, model_id: str | None, download: bool
) -> None:
    """Raise unless downloading was asked for and the Hub answers (one short probe)."""
    if not download or not hub_reachable():
        raise BackboneUnavailableError(
            unavailable_message(
                cfg.name, repo, missing=missing, model_id=model_id, download=download
            )
        )


def _hub_folder(cfg: BackboneConfig, repo: str, *, download: bool) -> Path:
    """Snapshot folder holding open_clip_config.json + weights for ``repo``.

    From the local cache; downloaded (with huggingface_hub's progress bars) only when
    ``download`` is true.
    """
    config = _cached_file(repo, _CONFIG_FILE)
    weights = next((p for f in _WEIGHT_FILES if (p := _cached_file(repo, f))), None)
    if config is not None and weights is not None and config.parent == weights.parent:
        return config.parent
    missing = f"{_CONFIG_FILE} + weights" if config is None else "the weights file"
    _require_download(cfg, repo, missing=missing, model_id=cfg.model, download=download)
    from huggingface_hub import snapshot_download

    try:  # connected: fetch only what open_clip needs
        folder = snapshot_download(
            repo, allow_patterns=[_CONFIG_FILE, *_WEIGHT_FILES, "*.json", "*.txt"], etag_timeout=5
        )
    except Exception as exc:
        raise BackboneUnavailableError(
            unavailable_message(cfg.name, repo, missing=missing, model_id=cfg.model)
            + f" (download failed: {type(exc).__name__}: {exc})"
        ) from exc
    return Path(folder)


def _tag_weights(cfg: BackboneConfig, *, download: bool) -> tuple[Path, dict[str, Any]]:
    """Cached weights file for an open_clip architecture + pretrained tag."""
    import open_clip

    pcfg = open_clip.get_pretrained_cfg(cfg.model, cfg.pretrained or "")
    if not pcfg:
        raise ConfigError(
            f"backbone {cfg.name!r}: open_clip has no pretrained tag {cfg.pretrained!r} for "
            f"{cfg.model!r}; tags: {open_clip.list_pretrained_tags_by_model(cfg.model)}"
        )
    repo = (pcfg.get("hf_hub") or cfg.hub_repo or "").strip("/")
    if not repo:
        raise ConfigError(f"backbone {cfg.name!r}: no Hugging Face repository for its weights")
    weights = next((p for f in _WEIGHT_FILES if (p := _cached_file(repo, f))), None)
    if weights is not None:
        return weights, pcfg
    _require_download(cfg, repo, missing="the weights file", model_id=None, download=download)
    return Path(open_clip.download_pretrained(pcfg)), pcfg


# --------------------------------------------------------------------------- building
def _build_from_model_cfg(model_cfg: Mapping[str, Any]) -> Any:
    """An open_clip CLIP / CustomTextCLIP from a ``model_cfg`` dict (random init)."""
    import open_clip

    cfg = json.loads(json.dumps(dict(model_cfg)))  # deep copy
    if "multimodal_cfg" in cfg:
        raise ConfigError("CoCa-style models (multimodal_cfg) are not supported as backbones")
    text_cfg = cfg.get("text_cfg", {})
    custom = bool(cfg.pop("custom_text", False)) or "hf_model_name" in text_cfg
    vision_cfg = cfg.get("vision_cfg", {})
    if "timm_model_name" in vision_cfg:
        vision_cfg["timm_model_pretrained"] = False
    if "hf_model_name" in text_cfg:
        text_cfg["hf_model_pretrained"] = False
    cls = open_clip.CustomTextCLIP if custom else open_clip.CLIP
    params = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return cls(**{k: v for k, v in cfg.items() if k in params})


def _tokenizer_for(model_cfg: Mapping[str, Any], folder: Path | None = None) -> Any:
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    text_cfg = model_cfg.get("text_cfg", {})
    ctx = int(text_cfg.get("context_length", 77))
    if "hf_tokenizer_name" in text_cfg or "hf_model_name" in text_cfg:
        name = text_cfg.get("hf_tokenizer_name") or text_cfg["hf_model_name"]
        if folder is not None and (folder / "tokenizer_config.json").is_file():
            name = str(folder)
        return HFTokenizer(name, context_length=ctx, **text_cfg.get("tokenizer_kwargs", {}))
    return SimpleTokenizer(context_length=ctx)


def read_state_dict(path: Path) -> dict[str, Any]:
    """Tensors of a checkpoint: safetensors, or ``torch.load(weights_only=True)``."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        sd: dict[str, Any] = load_file(str(path))
    else:
        import torch

        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConfigError(
                f"{path}: cannot load as a weights-only checkpoint ({type(exc).__name__}: "
                f"{exc}); conceptlens never unpickles arbitrary objects. Convert it to "
                "safetensors on a trusted machine."
            ) from exc
        if isinstance(obj, dict) and "state_dict" in obj:
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}: expected a state dict, got {type(obj).__name__}")
        sd = obj
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _checkpoint_model_cfg(path: Path, architecture: Any) -> tuple[dict[str, Any], dict]:
    """The architecture of a bare checkpoint: argument, safetensors metadata or sidecar."""
    import open_clip

    if architecture is not None:
        if isinstance(architecture, Mapping):
            arch = dict(architecture)
            return arch.get("model_cfg", arch), dict(arch.get("preprocess_cfg", {}))
        name = str(architecture)
        if name in list_backbones():
            name = get_backbone_config(name).model
        mcfg = open_clip.get_model_config(name)
        if mcfg is None:
            raise ConfigError(
                f"unknown architecture {architecture!r} for checkpoint {path}; use an open_clip "
                "model name (open_clip.list_models()) or a model_cfg dict"
            )
        return mcfg, {}
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if "open_clip_config" in meta:
            data = json.loads(meta["open_clip_config"])
            return data.get("model_cfg", data), dict(data.get("preprocess_cfg", {}))
    for sidecar in (path.with_suffix(".json"), path.parent / _CONFIG_FILE):
        if sidecar.is_file():
            data = _read_open_clip_json(sidecar)
            return data["model_cfg"], dict(data.get("preprocess_cfg", {}))
    raise ConfigError(
        f"checkpoint {path} does not say which architecture it holds; put an "
        f"{_CONFIG_FILE} (with 'model_cfg') next to it, store it in the safetensors metadata "
        "under 'open_clip_config', or pass architecture='ViT-B-16' (an open_clip model name)"
    )


def _load_weights(model: Any, path: Path) -> None:
    sd = read_state_dict(path)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # position_ids buffers differ between transformers versions; everything else must match
    missing = [k for k in missing if not k.endswith("position_ids")]
    unexpected = [k for k in unexpected if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ConfigError(
            f"{path}: weights do not match the architecture (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}); check that the config describes this checkpoint"
        )


def _build_text_side(
    config: BackboneConfig,
    model_cfg: Mapping[str, Any],
    folder: Path | None,
    *,
    download: bool,
) -> tuple[Any, Any]:
    """Model + tokenizer of a local checkpoint or folder, resolved offline first.

    A Hugging Face text tower's config and tokenizer are looked up with offline mode
    forced; only when they are not cached and ``download`` is true is huggingface_hub
    allowed to fetch them.
    """
    import open_clip

    def _make() -> tuple[Any, Any]:
        model = _build_from_model_cfg(model_cfg)
        tokenizer = (
            open_clip.get_tokenizer(config.tokenizer)
            if config.tokenizer
            else _tokenizer_for(model_cfg, folder)
        )
        return model, tokenizer

    try:
        with hub_offline():
            return _make()
    except OSError as exc:  # a text tower's HF config/tokenizer is not cached
        text_cfg = model_cfg.get("text_cfg", {})
        repo = str(text_cfg.get("hf_model_name") or config.hub_repo or folder or config.model)
        if download and hub_reachable():
            return _make()
        raise BackboneUnavailableError(
            unavailable_message(
                config.name,
                repo,
                missing=f"a file the text tower needs ({exc})",
                model_id=config.model,
                download=download,
            )
        ) from exc


def build_model(
    config: BackboneConfig,
    *,
    checkpoint: Path | None = None,
    architecture: Any = None,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> LoadedModel:
    """Build the model (eval mode, CPU) and tokenizer described by ``config``.

    Weight availability is checked before open_clip is imported (a few seconds on a
    loaded machine), so an unavailable hub backbone fails fast. ``weights`` replaces the
    shipped weights of ``synthderm-lit``; ``download`` allows huggingface_hub to fetch
    missing hub files.
    """
    if config.loader == "synthderm-lit":
        from conceptlens.backbones import _synthderm_lit
        from conceptlens.backbones._minilm import minilm_digest

        model, tokenizer = _synthderm_lit.build_synthderm_lit(
            pretrained=pretrained, weights=None if weights is None else Path(weights)
        )
        wfile = Path(weights).expanduser() if weights is not None else _synthderm_lit.WEIGHTS_PATH
        wpath = wfile if (pretrained or weights is not None) and wfile.is_file() else None
        return LoadedModel(
            config,
            model.eval(),
            tokenizer,
            wpath,
            "synthderm-lit",
            extra_hashes={"minilm": minilm_digest()},
        )
    if weights is not None:
        raise ConfigError(
            f"weights= replaces the weights of 'synthderm-lit' only; for {config.name!r} pass "
            "the checkpoint file itself as the backbone (load_backbone('/path/model.safetensors'))"
        )

    if checkpoint is not None:
        model_cfg, pp = _checkpoint_model_cfg(checkpoint, architecture)
        model, tokenizer = _build_text_side(config, model_cfg, None, download=download)
        _load_weights(model, checkpoint)
        cfg = _config_with_preprocess(config, pp)
        if not pp:
            size = model_cfg.get("vision_cfg", {}).get("image_size", cfg.image_size)
            cfg = dataclasses.replace(cfg, image_size=int(_first(size)))
        return LoadedModel(cfg, model.eval(), tokenizer, checkpoint, "file")

    schema_dir: Path | None = None
    if config.model.startswith("hf-hub:"):
        repo = config.hub_repo or config.model[len("hf-hub:") :]
        schema_dir = _hub_folder(config, repo, download=download)
    elif config.model.startswith("local-dir:"):
        schema_dir = Path(config.model[len("local-dir:") :])
    elif Path(config.model).is_dir():
        schema_dir = Path(config.model)

    if schema_dir is not None:
        data = _read_open_clip_json(schema_dir / _CONFIG_FILE)
        weights_file = next(
            (schema_dir / f for f in _WEIGHT_FILES if (schema_dir / f).is_file()), None
        )
        if weights_file is None:
            raise MissingFileError(
                f"{schema_dir} has {_CONFIG_FILE} but no weights file ({_WEIGHT_FILES})"
            )
        model, tokenizer = _build_text_side(
            config, data["model_cfg"], schema_dir, download=download
        )
        _load_weights(model, weights_file)
        cfg = _config_with_preprocess(config, data.get("preprocess_cfg", {}))
        return LoadedModel(cfg, model.eval(), tokenizer, weights_file, str(schema_dir))

    # built-in open_clip architecture + pretrained tag
    if pretrained and config.hub_repo:
        repo = config.hub_repo
        if not any(_cached_file(repo, f) for f in _WEIGHT_FILES):
            _require_download(
                config, repo, missing="the weights file", model_id=None, download=download
            )
    import open_clip

    if open_clip.get_model_config(config.model) is None:
        raise ConfigError(f"backbone {config.name!r}: unknown open_clip model {config.model!r}")
    if not pretrained:
        model = open_clip.create_model(config.model, pretrained=None)
        wpath = None
    else:
        if not config.pretrained:
            raise ConfigError(
                f"backbone {config.name!r}: a built-in architecture needs a 'pretrained' tag"
            )
        wpath, pcfg = _tag_weights(config, download=download)
        model = open_clip.create_model(
            config.model, pretrained=None, force_quick_gelu=bool(pcfg.get("quick_gelu", False))
        )
        _load_weights(model, wpath)
    if download:
        tokenizer = open_clip.get_tokenizer(config.tokenizer or config.model)
    else:
        with hub_offline():
            tokenizer = open_clip.get_tokenizer(config.tokenizer or config.model)
    return LoadedModel(config, model.eval(), tokenizer, wpath, config.model)


def _first(size: Any) -> int:
    return int(size[0]) if isinstance(size, list | tuple) else int(size)
