import os
import stat
from pathlib import Path

import pytest

from conceptlens._io import atomic_dir, atomic_path, atomic_write_text, sha256_file, user_path


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("crash")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_sha256_matches_hashlib(tmp_path):
    import hashlib

    data = b"conceptlens" * 1000
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_atomic_dir_keeps_old_on_error_and_replaces_on_success(tmp_path):
    target = tmp_path / "store"
    with atomic_dir(target) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir()) and tmp.parent == tmp_path
        (tmp / "a.txt").write_text("first")
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("half-written")
        raise RuntimeError("crash")
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["store"]
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("second")
    assert [p.name for p in target.iterdir()] == ["b.txt"]  # replaced, not merged
    assert (target / "b.txt").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _modes(root):
    """Permission bits of ``root`` and everything below it: {relative path: mode}."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        out[str(p.relative_to(root))] = stat.S_IMODE(p.stat().st_mode)
    return out


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_outputs_honour_the_umask(tmp_path, umask):
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    atomic_write_text(tmp_path / "a.txt", "x")
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    with atomic_dir(tmp_path / "store") as tmp:
        (tmp / "inner").mkdir()
        (tmp / "inner" / "c.txt").write_text("x")
    with atomic_dir(tmp_path / "store") as tmp:  # replacing keeps the same modes
        (tmp / "d.txt").write_text("x")
    modes = _modes(tmp_path)
    assert modes["a.txt"] == modes["b.bin"] == modes["store/d.txt"] == file_mode
    assert modes["store"] == dir_mode
    # the same as what plain open/mkdir give in the same process
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "plain").mkdir()
    assert _modes(tmp_path)["plain.txt"] == file_mode
    assert _modes(tmp_path)["plain"] == dir_mode


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_written_scores_are_readable_by_the_group(tmp_path, umask, suffix):
    import numpy as np
    import xarray as xr

    from conceptlens.concepts import write_scores

    scores = xr.DataArray(
        np.arange(6, dtype=np.float32).reshape(3, 2),
        dims=("sample", "concept"),
        coords={"sample": ["a", "b", "c"], "concept": ["x", "y"]},
        name="concept_score",
    )
    write_scores(scores, tmp_path / f"scores{suffix}")
    for rel, mode in _modes(tmp_path / f"scores{suffix}").items():
        is_dir = (tmp_path / f"scores{suffix}" / rel).is_dir()
        assert mode == (0o777 if is_dir else 0o666) & ~umask, rel


def test_user_path_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_path("~/x/y.csv") == tmp_path / "x" / "y.csv"
    assert user_path(Path("rel/z")) == Path("rel/z")
    atomic_write_text("~/out/a.txt", "home")
    assert (tmp_path / "out" / "a.txt").read_text() == "home"
    assert sha256_file("~/out/a.txt") == sha256_file(tmp_path / "out" / "a.txt")
    with atomic_dir("~/store") as tmp:
        (tmp / "b").write_text("x")
    assert (tmp_path / "store" / "b").is_file()


def test_cache_root_expands_home_in_the_environment(tmp_path, monkeypatch):
    from conceptlens._io import cache_root

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CONCEPTLENS_CACHE_DIR", "~/cl-cache")
    assert cache_root() == tmp_path / "cl-cache"
    monkeypatch.delenv("CONCEPTLENS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "~/xdg")
    assert cache_root() == tmp_path / "xdg" / "conceptlens"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saved_head_is_readable_by_the_group(tmp_path, umask):
    # safetensors' save_file creates 0600 files; a saved head must honour the umask
    import numpy as np

    from conceptlens.heads import SparseLinearHead, save_head

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    head = SparseLinearHead(C=1.0).fit(X, (X[:, 0] > 0).astype(int))
    save_head(head, tmp_path / "model")
    for rel, mode in _modes(tmp_path / "model").items():
        is_dir = (tmp_path / "model" / rel).is_dir()
        assert mode == (0o777 if is_dir else 0o666) & ~umask, rel


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saved_lit_weights_are_readable_by_the_group(tmp_path, umask):
    from conceptlens.backbones._synthderm_lit import build_synthderm_lit, save_lit_weights

    model, _ = build_synthderm_lit()
    out = save_lit_weights(model, tmp_path / "w.safetensors")
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize(
    ("content", "reason", "limit"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply", 10**6),  # RecursionError
        (b"\xff\xfe{}", "not UTF-8 text", 10**6),
        ('{"a": 1', "invalid JSON at line 1 column 8", 10**6),
        ("[" + "0," * 600 + "0]", "1,203 bytes, more than the 1,000", 1_000),
    ],
)
def test_read_json_turns_every_failure_into_one_error(tmp_path, content, reason, limit):
    from conceptlens._io import read_json
    from conceptlens.exceptions import ConfigError, DataError

    f = tmp_path / "x.json"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=rf"x\.json: not a readable thing \({reason}.*; redo it"):
        read_json(f, what="thing", fix="redo it", max_bytes=limit)
    with pytest.raises(ConfigError):
        read_json(f, what="thing", fix="redo it", error=ConfigError, max_bytes=limit)


def test_json_files_users_pass_in_are_read_defensively(tmp_path):
    """Split files, adapters, backbone configs: a hostile file is a one-line error."""
    from conceptlens.backbones import add_backbone_config
    from conceptlens.data import load_splits
    from conceptlens.exceptions import ConfigError, DataError

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="nested too deeply"):
        load_splits(deep)
    with pytest.raises(ConfigError, match="nested too deeply"):
        add_backbone_config(deep)


_ALIAS_BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    + ["scores: *a8"]
)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (_ALIAS_BOMB, r"line 2: YAML alias '\*a0'; aliases are not accepted"),
        ("a: [unclosed", "line 1: invalid YAML"),
        (b"\xff\xfe", "not UTF-8 text"),
        ("[" * 100_000, "nested too deeply|line 1: invalid YAML"),
    ],
)
def test_read_yaml_refuses_aliases_and_names_the_problem(tmp_path, content, reason):
    from conceptlens._io import read_yaml
    from conceptlens.exceptions import DataError

    f = tmp_path / "c.yaml"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=rf"c\.yaml: not a readable thing \(({reason})"):
        read_yaml(f, what="thing", fix="redo it")


def test_yaml_configs_users_pass_in_are_read_defensively(tmp_path):
    """Study configs and SynthDerm presets: an alias bomb, broken YAML or a binary file is
    a one-line ConfigError (they were an unbounded expansion or an internal error)."""
    from click.testing import CliRunner

    from conceptlens.cli import main
    from conceptlens.exceptions import ConfigError
    from conceptlens.synthderm import SynthDermConfig

    (tmp_path / "bomb.yaml").write_text(_ALIAS_BOMB)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    for name in ("bomb.yaml", "binary.yaml"):
        with pytest.raises(ConfigError, match=rf"{name}: not a readable SynthDerm"):
            SynthDermConfig.from_yaml(tmp_path / name)
        res = CliRunner().invoke(main, ["audit", "--config", str(tmp_path / name)])
        assert res.exit_code == 1 and "not a readable study config" in res.output
        assert "internal error" not in res.output
