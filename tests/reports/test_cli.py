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


def test_report_case_without_backbone_attrs_leaves_maps_out_with_a_note(study, tmp_path):
    _files(study, tmp_path)
    sid = str(study["scores"].sample.values[3])
    args = [*_case_args(tmp_path), "--sample", sid, "--image", str(tmp_path / "case.png")]
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "c.pdf")])
    assert r.exit_code == 0, r.output
    assert "concept maps left out: the scores do not record the backbone" in r.output
    assert "similarity maps" not in pdf_words(tmp_path / "c.pdf")
    r = CliRunner().invoke(main, [*args, "--maps", "--out", str(tmp_path / "d.pdf")])
    assert r.exit_code == 1 and r.output.startswith("error: the scores do not record")
    assert not (tmp_path / "d.pdf").exists()
    r = CliRunner().invoke(main, [*_case_args(tmp_path), "--sample", sid, "--maps",
                                  "--out", str(tmp_path / "e.pdf")])  # fmt: skip
    assert r.exit_code == 2 and "--maps needs --image" in r.output


def test_report_case_draws_maps_with_the_backbone_the_scores_came_from(tmp_path):
    """Scores made by synthderm-lit: the case report loads it and draws the concept maps."""
    import conceptlens as cl
    from conceptlens.backbones import load_backbone
    from conceptlens.concepts import load_bank, score_concepts, write_scores
    from conceptlens.heads import ConceptBottleneckClassifier

    batch = cl.SynthDerm("confounded").generate(40, seed=3)
    backbone = load_backbone("synthderm-lit")
    scores = score_concepts(backbone, batch.images, "synthderm", cache=tmp_path / "cache")
    scores = scores.assign_coords(label=("sample", np.asarray(batch.labels)))
    cbm = ConceptBottleneckClassifier(C=0.5).fit(scores, "label")
    write_scores(scores, tmp_path / "scores.nc")
    save_head(cbm, tmp_path / "head", trained_on=scores)
    Image.fromarray(batch.images[5]).save(tmp_path / "case.png")
    sid = str(scores.sample.values[5])
    args = [*_case_args(tmp_path), "--sample", sid, "--image", str(tmp_path / "case.png"),
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "case.pdf")])
    assert r.exit_code == 0, r.output
    assert "left out" not in r.output
    assert "patch similarity maps" in pdf_words(tmp_path / "case.pdf")
    # maps from another bank than the scores' would explain other concepts: refused
    bank = load_bank("synthderm")
    bank.subset(names=list(bank.names)[:-1]).save(tmp_path / "other.yaml")
    r = CliRunner().invoke(main, [*args, "--maps", "--bank", str(tmp_path / "other.yaml"),
                                  "--out", str(tmp_path / "x.pdf")])  # fmt: skip
    assert r.exit_code == 1 and "pass --bank with the bank file used" in r.output
    assert not (tmp_path / "x.pdf").exists()


def test_report_case_does_not_guess_a_position_for_numeric_ids(study, tmp_path):
    """With ids such as '0005', `--sample 5` is a mistyped id, not position 5."""
    from conceptlens.concepts import write_scores

    _files(study, tmp_path)
    s = study["scores"]
    s = s.assign_coords(sample=[f"{i:04d}" for i in range(s.sizes["sample"])])
    write_scores(s, tmp_path / "numeric.nc")
    args = ["report", "case", "--model", str(tmp_path / "head"), "--scores",
            str(tmp_path / "numeric.nc"), "--out", str(tmp_path / "c.pdf")]  # fmt: skip
    r = CliRunner().invoke(main, [*args, "--sample", "5"])
    assert r.exit_code == 1 and "the ids are numbers" in r.output
    assert not (tmp_path / "c.pdf").exists()
    r = CliRunner().invoke(main, [*args, "--sample", "0005"])
    assert r.exit_code == 0, r.output
    assert "Case report: 0005" in pdf_words(tmp_path / "c.pdf")
    # ids that are not numbers still take a position
    r = CliRunner().invoke(
        main, [*_case_args(tmp_path), "--sample", "3", "--out", str(tmp_path / "d.pdf")]
    )
    assert r.exit_code == 0, r.output
    assert f"Case report: {study['scores'].sample.values[3]}" in pdf_words(tmp_path / "d.pdf")
