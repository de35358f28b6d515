"""`conceptlens data info`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
from click.testing import CliRunner
from PIL import Image

from conceptlens.cli import main


def _run(*args: str):
    return CliRunner().invoke(main, ["--quiet", "data", "info", *args])


def test_info_on_folder_counts_and_problems(png_folder):
    ok = _run(str(png_folder))
    assert ok.exit_code == 0, ok.output
    assert "3 readable samples" in ok.output
    assert "fundus     2" in ok.output and "pathology  1" in ok.output
    (png_folder / "pathology" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    bad = _run(str(png_folder))
    assert bad.exit_code == 1
    assert "1 problem(s)" in bad.output and "broken.png" in bad.output
    errors = [line for line in bad.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--allow-errors" in errors[0]
    allowed = _run(str(png_folder), "--allow-errors", "--json")
    assert allowed.exit_code == 0
    report = json.loads(allowed.stdout)
    assert report["n_samples"] == 3 and report["label_counts"] == {"fundus": 2, "pathology": 1}
    assert len(report["errors"]) == 1 and "broken.png" in report["errors"][0]


def test_info_on_manifest_breakdown_imbalance_duplicates(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    Image.fromarray(img).save(tmp_path / "x.png")
    rows = [
        {"id": f"r{k}", "path": "x.png", "label": "common", "site": f"s{k % 2}", "split": "train"}
        for k in range(20)
    ]
    rows.append({"id": "rare1", "path": "x.png", "label": "rare", "site": "s0", "split": "test"})
    rows.append({"id": "r3", "path": "x.png", "label": "rare", "site": "s1", "split": "test"})
    rows.append({"id": "gone", "path": "gone.png", "label": "rare", "site": "s1", "split": "test"})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    res = _run(str(tmp_path / "m.csv"), "--json")
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert report["label_counts"] == {"common": 20, "rare": 1}
    assert report["breakdown"]["site"] == {"s0": 11, "s1": 10}
    assert report["breakdown"]["split"] == {"test": 1, "train": 20}
    errors = "\n".join(report["errors"])
    assert "duplicate id 'r3'" in errors and "gone.png" in errors
    assert any("label imbalance" in w for w in report["warnings"])
    fast = _run(str(tmp_path / "m.csv"), "--no-check-images", "--allow-errors")
    assert fast.exit_code == 0 and "not decoded" in fast.output
    assert "1 problem(s)" in fast.output  # only the duplicate id; files not opened


def test_info_on_npz_and_dicom(tmp_path):
    import pydicom.data as pydicom_data

    np.savez(
        tmp_path / "toy.npz",
        train_images=np.zeros((3, 8, 8), np.uint8),
        train_labels=[[0], [1], [1]],
        test_images=np.zeros((2, 8, 8), np.uint8),
        test_labels=[[1], [0]],
    )
    res = _run(str(tmp_path / "toy.npz"))
    assert res.exit_code == 0, res.output
    assert "5 readable samples" in res.output and "by split: test=2, train=3" in res.output
    dicoms = tmp_path / "dicoms"
    dicoms.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_truncated.dcm"):
        shutil.copy(pydicom_data.get_testdata_file(name), dicoms / name)
    res = _run(str(dicoms), "--json")
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert report["n_samples"] == 2 and report["label_counts"] == {}
    assert "MR_truncated.dcm" in report["errors"][0] and "truncated" in report["errors"][0]


def test_info_missing_path_is_one_line_error(tmp_path):
    res = _run(str(tmp_path / "nothing.csv"))
    assert res.exit_code == 1
    assert res.output.strip().startswith("error:") and "nothing.csv" in res.output
    assert "Traceback" not in res.output


def test_synthderm_subcommand_is_registered():
    res = CliRunner().invoke(main, ["data", "--help"])
    assert res.exit_code == 0 and "info" in res.output and "synthderm" in res.output


def test_info_on_a_synthderm_folder_reads_its_manifest(tmp_path):
    out = tmp_path / "sd"
    res = CliRunner().invoke(
        main, ["--quiet", "data", "synthderm", "--n", "24", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert (out / "manifest.csv").is_file() and (out / "masks").is_dir()
    info = _run(str(out), "--json", "--no-check-images")
    assert info.exit_code == 0, info.output
    report = json.loads(info.stdout)
    manifest = pd.read_csv(out / "manifest.csv")
    assert report["n_samples"] == len(manifest) == 24
    assert report["label_counts"] == manifest["label"].value_counts().to_dict()
    assert "masks" not in report["classes"] and "images" not in report["classes"]
    assert "site" in report["breakdown"]


def test_info_flags_labels_differing_only_in_case_or_spacing(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    labels = ["melanoma"] * 3 + ["melanoma "] * 3 + ["Melanoma"] * 3 + ["nevus"] * 3
    pd.DataFrame(
        {"id": [f"s{i}" for i in range(12)], "path": ["x.png"] * 12, "label": labels}
    ).to_csv(tmp_path / "m.csv", index=False)
    res = _run(str(tmp_path / "m.csv"))
    assert res.exit_code == 0, res.output
    # the trailing space is visible, and the near-identical spellings are named together
    assert "  'melanoma '  " in res.output
    (warning,) = [line for line in res.output.splitlines() if "differ only in case" in line]
    assert "'Melanoma'" in warning and "'melanoma'" in warning and "'melanoma '" in warning


def test_control_characters_from_a_manifest_are_printed_escaped(tmp_path):
    """An id holding a terminal escape sequence must not reach the terminal raw."""
    pd.DataFrame(
        {"id": ["ok", "evil\x1b]0;owned\x07\u202e"], "path": ["x.png", "missing.png"]}
    ).to_csv(tmp_path / "m.csv", index=False)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    res = _run(str(tmp_path / "m.csv"))
    assert res.exit_code == 1
    assert "\x1b" not in res.output and "\u202e" not in res.output
    assert "evil\\x1b]0;owned\\x07\\u202e" in res.output
    res = CliRunner().invoke(
        main, ["bank", "show", str(tmp_path / "no\x1b[2Jbank.yaml")]
    )  # an error line quoting the path
    assert res.exit_code == 1 and "\x1b" not in res.output and "no\\x1b[2Jbank" in res.output
