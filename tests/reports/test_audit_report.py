"""Audit report: the summary in words comes from the audit's numbers; the PDF renders."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from conceptlens.exceptions import DataError
from conceptlens.explain import standardized_weights
from conceptlens.reports import audit_report, audit_summary
from tests.reports._pdf import assert_not_blank, pdf_metadata, pdf_words, rendered_pages


def _acc(audit, model, split):
    m = audit.metrics.sel(model=model, split=split, group="all", metric="accuracy")
    return tuple(float(m.sel(stat=s)) for s in ("estimate", "ci_low", "ci_high"))


def test_summary_names_the_shortcut_and_the_drop(study):
    res, cbm, sc = study["audit"], study["cbm"], study["shortcuts"]
    lines = audit_summary(res, model=cbm, model_name="cbm", shortcuts=sc)
    w = standardized_weights(cbm).sel({"class": "melanoma"})
    assert str(w.concept.values[int(np.argmax(np.abs(w.values)))]) == "purple_ink"
    a, c = _acc(res, "cbm", "site_a"), _acc(res, "cbm", "site_c")
    first = (f"purple_ink, an artifact concept, carries melanoma's largest weight "
             f"({float(w.sel(concept='purple_ink')):+.2f} logit per SD of its score), and "
             f"accuracy falls from {a[0]:.2f} [{a[1]:.2f}, {a[2]:.2f}] at site_a to "
             f"{c[0]:.2f} [{c[1]:.2f}, {c[2]:.2f}] at site_c")  # fmt: skip
    assert lines[0].startswith(first)
    flagged = sc[sc.suspect]
    assert any(f"flags {len(flagged)} (concept, class) pairs: purple_ink -> melanoma" in s
               for s in lines)  # fmt: skip
    assert any(s.startswith("probe: accuracy falls") for s in lines)


def test_summary_without_the_shortcut_finder_names_the_largest_artifact_weight(study):
    """No shortcut table: the lead sentence picks the largest per-SD weight of any class on
    an artifact concept (the dense formula over every class and concept)."""
    res, cbm = study["audit"], study["cbm"]
    w = standardized_weights(cbm)
    groups = dict(zip(map(str, w.concept.values),
                      map(str, study["scores"].concept_group.values), strict=True))  # fmt: skip
    art = [str(c) for c in w.concept.values if groups[str(c)] == "artifact"]
    a = np.abs(w.sel(concept=art).values)
    k, j = np.unravel_index(np.argmax(a), a.shape)
    cls, concept = str(w["class"].values[k]), art[j]
    lines = audit_summary(res, model=cbm, model_name="cbm", shortcuts=None, groups=groups)
    assert lines[0].startswith(f"{concept}, an artifact concept, carries {cls}'s ")


def test_summary_from_a_hand_built_audit():
    v = np.array([[0.70, 0.6, 0.8], [0.75, 0.7, 0.8]]).reshape(1, 2, 1, 1, 3)
    coords = {"model": ["m"], "split": ["in", "out"], "group": ["all"], "metric": ["accuracy"],
              "stat": ["estimate", "ci_low", "ci_high"]}  # fmt: skip
    m = xr.DataArray(v, dims=tuple(coords), coords=coords)
    ds = xr.Dataset({"metrics": m}, attrs={"reference_split": "in"})
    assert audit_summary(ds) == [
        "m: accuracy rises from 0.70 [0.60, 0.80] at in to 0.75 [0.70, 0.80] at out."
    ]
    with pytest.raises(DataError, match="reference split"):
        audit_summary(ds, reference="nowhere")
    with pytest.raises(DataError, match=r"studies\.audit"):
        audit_summary(xr.Dataset())


def test_audit_report_pdf(study, tmp_path):
    res, cbm, sc, s = study["audit"], study["cbm"], study["shortcuts"], study["scores"]
    masking = {"split": "site_c", "accuracy_before": 0.613, "accuracy_after": 0.774,
               "concepts": ["purple_ink", "ruler"]}  # fmt: skip
    out = audit_report(
        tmp_path / "audit.pdf", res, model=cbm, model_name="cbm", scores=s, shortcuts=sc,
        masking=masking, images=study["batch"], description="600 SynthDerm confounded images",
        seeds={"data": 0},
    )  # fmt: skip
    words = pdf_words(out)
    for heading in ("Summary", "Data", "Backbone and concept bank", "Metrics", "Shortcut findings",
                    "Masking and interventions", "Reproducibility"):  # fmt: skip
        assert heading in words
    assert "purple_ink, an artifact concept, carries melanoma's largest weight" in words
    a = _acc(res, "cbm", "site_c")
    assert f"{a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}]" in words  # metric table, three decimals
    n = int(res.n_cases.sel(split="site_c", group="all"))
    assert f"site_c {n} " in words
    assert "accuracy goes from 0.61 to 0.77" in words
    assert "600 SynthDerm confounded images" in words
    from conceptlens.reports._common import data_fingerprint

    assert data_fingerprint(s) in words
    assert f"version numpy: {res.attrs['version_numpy']}" in words
    meta = pdf_metadata(out)
    assert meta["/Title"] == "Concept-model audit"
    assert "audit" in meta["/Keywords"]
    pages = rendered_pages(out)
    assert len(pages) >= 3
    for page in pages:
        assert_not_blank(page)


def test_sections_without_input_are_left_out(study, tmp_path):
    out = audit_report(tmp_path / "a.pdf", study["audit"])
    words = pdf_words(out)
    assert "Summary" in words and "Shortcut findings" not in words
    assert "Masking and interventions" not in words


def test_data_fingerprint_changes_with_the_data(study):
    from conceptlens.reports._common import data_fingerprint

    s = study["scores"]
    assert data_fingerprint(s) == data_fingerprint(s.copy())
    t = s.copy()
    t[0, 0] += 1e-9
    assert data_fingerprint(t) != data_fingerprint(s)


def test_masking_grid_and_intervention_curves_in_the_report(study, tmp_path):
    from conceptlens.masking import intervention_curve
    from conceptlens.studies import masking_study
    from tests.studies._encoder import pooled_features
    from tests.studies._synth import synthderm_batch, synthderm_config

    ds = synthderm_batch(synthderm_config("confounded"), 120, seed=0, image_size=32).to_dataset()
    grid = masking_study(ds, roi="lesion_mask", encoder=pooled_features,
                         conditions=["full", "no_roi"], n_boot=20)  # fmt: skip
    s, train = study["scores"], study["train"]
    curve = intervention_curve(study["cbm"], s[~train], "label", reference_scores=s[train],
                               n_random=2)  # fmt: skip
    out = audit_report(tmp_path / "m.pdf", study["audit"], masking_grid=grid,
                       intervention_curves={"site_c": curve})  # fmt: skip
    words = pdf_words(out)
    assert "Masking and interventions" in words
    for model in grid.model.values:
        assert f"{model}: macro AUROC, dilation 0" in words
    assert f"site_c: uncertainty (AUC {float(curve.auc[0]):.3f})" in words
    for page in rendered_pages(out):
        assert_not_blank(page)
