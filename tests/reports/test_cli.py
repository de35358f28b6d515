"""`conceptlens report case` and `conceptlens report audit` from saved files."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from PIL import Image

from conceptlens.cli import main
from conceptlens.heads import save_head
from conceptlens.studies import save_audit
from tests.reports._pdf import pdf_words


def _files(study, tmp_path):
    from conceptlens.concepts import write_scores

    s = study["scores"]
    write_scores(s, tmp_path / "scores.nc")
    write_scores(s[study["train"]], tmp_path / "train.nc")
    save_head(study["cbm"], tmp_path / "head", trained_on=s[study["train"]])
    save_audit(study["audit"], tmp_path / "audit.nc")
    Image.fromarray(study["batch"].images[3]).save(tmp_path / "case.png")


def _case_args(tmp_path):
    return ["report", "case", "--model", str(tmp_path / "head"),
            "--scores", str(tmp_path / "scores.nc")]  # fmt: skip


def test_report_case_and_audit(study, tmp_path):
    _files(study, tmp_path)
    sid = str(study["scores"].sample.values[3])
    r = CliRunner().invoke(main, [
        *_case_args(tmp_path),
        "--sample", sid, "--image", str(tmp_path / "case.png"),
        "--reference", str(tmp_path / "train.nc"), "--out", str(tmp_path / "case.pdf"),
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    words = pdf_words(tmp_path / "case.pdf")
    assert f"Case report: {sid}" in words and "What if?" in words
    p = study["cbm"].predict_proba(study["scores"][[3]])[0]
    assert f"probability {p.max():.2f}" in words

    r = CliRunner().invoke(main, [
        "report", "audit", "--audit", str(tmp_path / "audit.nc"),
        "--model", f"cbm={tmp_path / 'head'}", "--scores", str(tmp_path / "scores.nc"),
        "--description", "SynthDerm confounded, 600 images", "--out", str(tmp_path / "a.pdf"),
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    words = pdf_words(tmp_path / "a.pdf")
    assert "purple_ink, an artifact concept, carries melanoma's largest weight" in words
    assert "Shortcut findings" in words and "SynthDerm confounded, 600 images" in words


def test_report_errors_are_one_line(study, tmp_path):
    _files(study, tmp_path)
    r = CliRunner().invoke(main, [
        *_case_args(tmp_path),
        "--sample", "nobody", "--out", str(tmp_path / "c.pdf"),
    ])  # fmt: skip
    assert r.exit_code != 0
    assert "nobody" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "c.pdf").exists()
    (tmp_path / "bad.png").write_bytes(b"not an image")
    r = CliRunner().invoke(main, [
        *_case_args(tmp_path),
        "--sample", "0", "--image", str(tmp_path / "bad.png"), "--out", str(tmp_path / "c.pdf"),
    ])  # fmt: skip
    assert r.exit_code != 0 and "not a readable image" in r.output
    assert np.all([line.startswith("error:") for line in r.output.strip().splitlines()][:1])
