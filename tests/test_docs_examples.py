"""The self-contained ``python`` examples of README.md and docs/*.md run as written.

Each case names one fenced ``python`` block by a line it contains (so editing other blocks
does not move the test), runs it in a scratch folder with its own cache, and then checks
what the page's comments say it returns.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _block(page: str, marker: str) -> str:
    """The one ``python`` block of ``page`` that contains ``marker``."""
    blocks = [b for b in _FENCE.findall((ROOT / page).read_text()) if marker in b]
    if len(blocks) != 1:
        raise AssertionError(
            f"{page}: expected one python block containing {marker!r}, found {len(blocks)}; "
            "update tests/test_docs_examples.py to the page."
        )
    return blocks[0]


def _run(
    page: str,
    marker: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: dict | None = None,
) -> dict:
    """Run the block in ``tmp_path``; ``setup`` holds the variables the page says to bring."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONCEPTLENS_CACHE_DIR", str(tmp_path / "cache"))
    namespace: dict = {"__name__": "docs_example", **(setup or {})}
    exec(compile(_block(page, marker), f"{page}:{marker}", "exec"), namespace)
    return namespace


def test_concept_banks_first_example(tmp_path, monkeypatch):
    ns = _run("docs/concept_banks.md", "list_banks()", tmp_path, monkeypatch)
    assert {"blood_cell", "chest_xray", "dermoscopy", "synthderm"} <= set(ns["list_banks"]())
    bank = ns["bank"]
    assert bank.names[:2] == ("atypical_pigment_network", "blue_white_veil")
    assert {"ruler", "purple_ink", "dark_corners", "hair", "gel_bubbles"} <= set(
        bank.subset(groups=["artifact"]).names
    )
    assert all(c.classes.get("melanoma") == 1 for c in bank.subset(classes=["melanoma"]).concepts)
    assert re.fullmatch(r"[0-9a-f]{64}", bank.fingerprint)


def test_synthderm_preset_example(tmp_path, monkeypatch):
    ns = _run("docs/synthderm.md", "list_synthderm_presets()", tmp_path, monkeypatch)
    assert ns["list_synthderm_presets"]() == [
        "confounded",
        "iid",
        "protocol-shift",
        "skin-tone-shift",
    ]
    assert (tmp_path / "ink-at-c.yaml").is_file()
    table = ns["custom"].artifact_table()
    assert table.loc[("site_c", "melanoma"), "purple_ink"] == pytest.approx(0.9)


def test_synthderm_batch_example(tmp_path, monkeypatch):
    ns = _run("docs/synthderm.md", "batch.captions[0]", tmp_path, monkeypatch)
    batch = ns["batch"]
    assert batch.images.shape == (1000, 96, 96, 3)
    assert batch.concepts.shape == (1000, 17)
    assert set(batch.site) == {"site_a", "site_b", "site_c"}
    assert batch.captions[0].startswith("Close-up dermoscopy of a malignant melanoma presenting")
    assert len(ns["ds"]) == 1000


@pytest.mark.slow
def test_spatial_concept_maps_example(tmp_path, monkeypatch):
    ns = _run(
        "docs/spatial.md", "from conceptlens.spatial import concept_maps", tmp_path, monkeypatch
    )
    maps = ns["maps"]
    assert maps.dims == ("sample", "concept", "y", "x")
    assert maps.shape == (8, 17, 12, 12)
    assert ns["fine"].shape == (8, 17, 24, 24)
    assert ns["px"].shape == (8, 17, 96, 96)


@pytest.mark.slow
def test_readme_python_example(tmp_path, monkeypatch):
    ns = _run("README.md", "cl.ConceptBottleneckClassifier(", tmp_path, monkeypatch)
    model = ns["model"]
    assert model.coef_.dims == ("class", "concept")
    # the README's comment: purple_ink, the planted site shortcut, comes first for melanoma
    assert str(model.top_concepts("melanoma", k=3)["concept"].values[0]) == "purple_ink"


@pytest.mark.slow
def test_concept_banks_filter_and_select_example(tmp_path, monkeypatch):
    import conceptlens as cl

    setup = {
        "backbone": cl.load_backbone("synthderm-lit"),
        "train": cl.SynthDerm("confounded").generate(120, seed=0).to_dataset(),
        "bank": cl.load_bank("dermoscopy"),
    }
    ns = _run("docs/concept_banks.md", "select_concepts(kept", tmp_path, monkeypatch, setup)
    kept, selected = ns["kept"], ns["selected"]
    assert set(selected.names) <= set(kept.names) < set(setup["bank"].names)
    assert len(ns["report"].to_frame()) == len(setup["bank"].names) - len(kept.names)


@pytest.mark.slow
def test_audits_probe_folder_example_feeds_the_audit_command(tmp_path, monkeypatch):
    """docs/audits.md: the probe saved from Python is what `audit --model probe=...` reads."""
    import xarray as xr
    from click.testing import CliRunner

    from conceptlens.cli import main
    from conceptlens.synthderm import write_synthderm

    write_synthderm(tmp_path / "train", 60, seed=0, preset="confounded")
    write_synthderm(tmp_path / "test", 40, seed=1, preset="confounded")
    monkeypatch.setenv("CONCEPTLENS_CACHE_DIR", str(tmp_path / "cache"))
    run = CliRunner().invoke
    for args in (
        ["score", "--data", str(tmp_path / "test"), "--bank", "synthderm",
         "--out", str(tmp_path / "test_scores.nc")],
        ["score", "--data", str(tmp_path / "train"), "--bank", "synthderm",
         "--out", str(tmp_path / "train_scores.nc")],
        ["fit", "--scores", str(tmp_path / "train_scores.nc"), "--C", "1.0", "--n-boot", "0",
         "--out", str(tmp_path / "runs" / "head")],
    ):  # fmt: skip
        res = run(main, args)
        assert res.exit_code == 0, res.output
    _run("docs/audits.md", "LinearProbe(C=0.1)", tmp_path, monkeypatch)
    res = run(
        main,
        ["audit", "--scores", "test_scores.nc", "--model", "cbm=runs/head", "--model",
         "probe=runs/probe", "--input", "probe=embeddings.npy", "--n-boot", "20",
         "--out", "audit.nc"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    audit = xr.load_dataset(tmp_path / "audit.nc")
    assert list(audit["model"].values) == ["cbm", "probe"]
    # a file that is not a .npy array is refused with its name, not an internal error
    res = run(
        main,
        ["audit", "--scores", "test_scores.nc", "--model", "probe=runs/probe", "--input",
         "probe=test_scores.nc", "--out", "audit2.nc"],
    )  # fmt: skip
    assert res.exit_code == 1 and "probe=test_scores.nc is not a numeric .npy" in res.output
    assert "internal error" not in res.output


@pytest.mark.slow
def test_spatial_concept_segmenter_example(tmp_path, monkeypatch):
    import conceptlens as cl

    bb = cl.load_backbone("synthderm-lit")
    test = cl.SynthDerm("confounded").generate(6, seed=202)
    ns = _run(
        "docs/spatial.md",
        "seg = ConceptSegmenter().fit(bb, train.images, masks)",
        tmp_path,
        monkeypatch,
        setup={"cl": cl, "bb": bb, "test": test},
    )
    maps = ns["maps"]
    assert maps.dims == ("sample", "concept", "y", "x")
    assert maps.shape == (6, 14, 96, 96) and ns["two"].shape == (6, 2, 96, 96)
    assert ns["seg"].concepts_ == list(ns["masks"])
    assert (tmp_path / "models" / "derm-seg" / "segmenter.safetensors").is_file()
