"""Case report: the PDF holds the prediction, contributions and what-if numbers, and renders."""

from __future__ import annotations

import numpy as np
import pytest

from conceptlens.exceptions import UnknownNameError
from conceptlens.explain import contributions, head_parameters
from conceptlens.reports import case_report, what_if
from tests.reports._pdf import assert_not_blank, pdf_metadata, pdf_words, rendered_pages


def _melanoma_at_site_c(study):
    s = study["scores"]
    return int(np.flatnonzero((s.site.values == "site_c") & (s.label.values == "melanoma"))[0])


def test_case_report_text_numbers_and_pages(study, tmp_path):
    s, cbm = study["scores"], study["cbm"]
    i = _melanoma_at_site_c(study)
    sid = str(s.sample.values[i])
    out = case_report(tmp_path / "case.pdf", cbm, s, sid, image=study["batch"].images[i],
                      reference_scores=s[study["train"]])  # fmt: skip
    words = pdf_words(out)
    proba = cbm.predict_proba(s[[i]])[0]
    pred = str(cbm.predict(s[[i]])[0])
    assert f"Case report: {sid}" in words
    assert f"predicted {pred} (probability {proba.max():.2f})" in words
    assert "true class melanoma" in words
    for cls, p in zip(cbm.classes_, proba, strict=True):
        assert f"{cls}: probability {p:.3f}" in words
    c = contributions(cbm, s[[i]]).isel(sample=0).sel({"class": pred})
    j = int(np.argmax(np.abs(c.values)))
    assert f"{c.concept.values[j]}" in words and f"{float(c.values[j]):+.3f}" in words
    assert "What if?" in words and "Reproducibility" in words
    assert s.attrs["bank_fingerprint"] in words
    meta = pdf_metadata(out)
    assert meta["/Title"] == f"Case report: {sid}"
    assert meta["/Author"].startswith("conceptlens")
    assert meta["/Subject"] == "conceptlens case report"
    pages = rendered_pages(out)
    assert len(pages) >= 1
    for page in pages:
        assert_not_blank(page)


def test_what_if_matches_a_direct_recomputation(study):
    s, cbm = study["scores"], study["cbm"]
    one = s[[_melanoma_at_site_c(study)]]
    changes = what_if(cbm, one, k=2)  # no reference scores: set to the training mean
    assert changes and all(ch["change"] == "mean" for ch in changes)
    baseline = head_parameters(cbm)["baseline"]
    for ch in changes:
        x = one.copy()
        x.loc[{"concept": ch["concept"]}] = float(baseline.sel(concept=ch["concept"]))
        pred = ch["prediction_before"]
        k = list(cbm.classes_).index(pred)
        np.testing.assert_allclose(ch["proba_after"], cbm.predict_proba(x)[0, k], rtol=1e-10)
        assert ch["prediction_after"] == str(cbm.predict(x)[0])
        # the changed concept pushed the predicted class: removing it lowers its probability
        assert ch["proba_after"] < ch["proba_before"]


def test_case_report_errors(study, tmp_path):
    with pytest.raises(UnknownNameError, match="not in the scores"):
        case_report(tmp_path / "x.pdf", study["cbm"], study["scores"], "no-such-id")
    assert not (tmp_path / "x.pdf").exists()


def test_spatial_section_left_out_without_maps(study, tmp_path):
    out = case_report(tmp_path / "c.pdf", study["cbm"], study["scores"], 0,
                      image=study["batch"].images[0])  # fmt: skip
    assert "similarity maps" not in pdf_words(out)


def test_spatial_section_draws_the_top_concepts_maps(study, tmp_path, monkeypatch):
    """The maps of the three concepts that contribute most are drawn over the image."""
    import xarray as xr

    import conceptlens.plot._spatial as plot_spatial

    calls = []
    real = plot_spatial.plot_concept_maps

    def spy(image, maps, **kw):
        calls.append((image.shape, kw["sample"], list(kw["concepts"]), len(kw["axes"])))
        return real(image, maps, **kw)

    monkeypatch.setattr(plot_spatial, "plot_concept_maps", spy)
    s, cbm = study["scores"], study["cbm"]
    image = study["batch"].images[0]
    names = [str(c) for c in s.concept.values]
    coords = {"sample": [str(s.sample.values[0])], "concept": names}
    h, w = image.shape[:2]
    # one bright square per concept, at a different place for each
    grid = np.zeros((1, len(names), h, w))
    for j in range(len(names)):
        y0 = (7 * j) % (h - 8)
        grid[0, j, y0 : y0 + 8, y0 : y0 + 8] = 1.0
    maps = xr.DataArray(grid, dims=("sample", "concept", "y", "x"), coords=coords)
    out = case_report(tmp_path / "c.pdf", cbm, s, 0, image=image, concept_maps=maps)
    assert "patch similarity maps" in pdf_words(out)
    ((shape, sample, concepts, n_axes),) = calls
    c = contributions(cbm, s[[0]]).isel(sample=0)
    pred = str(cbm.predict(s[[0]])[0])
    row = c.sel({"class": pred})
    top = [str(row.concept.values[j]) for j in np.argsort(-np.abs(row.values), kind="stable")[:3]]
    assert shape == image.shape and sample == str(s.sample.values[0])
    assert concepts == top and n_axes == 4
    for page in rendered_pages(out):
        assert_not_blank(page)


def test_case_report_says_when_the_case_was_a_training_sample(study, tmp_path):
    from conceptlens.heads import load_head, save_head

    s, train = study["scores"], study["train"]
    folder = save_head(study["cbm"], tmp_path / "head", trained_on=s[train])
    model = load_head(folder)
    inside, outside = int(np.flatnonzero(train)[0]), int(np.flatnonzero(~train)[0])
    words = pdf_words(case_report(tmp_path / "a.pdf", model, s, inside))
    assert "case was used to fit the head" in words
    assert "case among the head's training samples: yes (in-sample)" in words
    words = pdf_words(case_report(tmp_path / "b.pdf", model, s, outside))
    assert "used to fit" not in words
    assert "case among the head's training samples: no" in words


def test_labels_and_ids_are_printed_literally_not_as_tex(study, tmp_path):
    """Class labels and sample ids are data: `$...$` in them is not mathtext (an invalid
    `$\\frac{$` stopped the report with a matplotlib parse error)."""
    from conceptlens.heads import ConceptBottleneckClassifier

    s, train = study["scores"], study["train"]
    names = {"melanoma": "mel $\\frac{$ x", "nevus": "nevus $x^2$"}
    labels = np.array([names.get(v, v) for v in s.label.values])
    s = s.assign_coords(
        label=("sample", labels), sample=[f"id$_{k}" for k in range(s.sizes["sample"])]
    )
    cbm = ConceptBottleneckClassifier(C=0.5).fit(s[train], labels[train])
    i = _melanoma_at_site_c(study)
    out = case_report(tmp_path / "case.pdf", cbm, s, f"id$_{i}")
    words = pdf_words(out)
    assert f"Case report: id$_{i}" in words
    assert "true class mel $\\frac{$ x" in words and "nevus $x^2$: probability" in words


def test_probability_chart_keeps_to_the_top_classes_with_short_names():
    """With many classes the chart shows the ten most probable (the predicted and the true
    class always among them) under names short enough to stay on the page."""
    from matplotlib.figure import Figure

    from conceptlens.reports._case import MAX_LABEL_CHARS, MAX_PROBA_BARS, _draw_proba

    classes = [f"class {i} with a long descriptive name" for i in range(30)]
    proba = np.linspace(1.0, 2.0, 30)
    proba /= proba.sum()  # class 29 most probable, class 0 least
    ax = Figure().add_subplot()
    _draw_proba(ax, classes, proba, pred=classes[29], label=classes[0])
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert len(ticks) == len(ax.patches) == MAX_PROBA_BARS
    assert all(len(t) <= MAX_LABEL_CHARS for t in ticks)
    assert ticks[0].startswith("class 29 ") and ticks[-1].startswith("class 0 ")
    assert ticks[1].startswith("class 28 ")  # then by probability
    assert "top 10 of 30 classes" in ax.get_title()
    ax = Figure().add_subplot()
    _draw_proba(ax, ["a", "b"], np.array([0.3, 0.7]), pred="b")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]  # class order
    assert ax.get_title() == "predicted probabilities"
