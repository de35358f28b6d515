"""Each plot draws real conceptlens outputs, with the right labels and values, warning-free."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from conceptlens.exceptions import DataError, UnknownNameError
from conceptlens.explain import contributions, standardized_weights
from conceptlens.plot import (
    concept_distributions,
    contribution_waterfall,
    head_weights,
    image_gallery,
    intervention_curves,
    masking_grid,
    metric_forest,
    metric_table,
    synthderm_montage,
)


def _render(ax):
    ax.figure.canvas.draw()  # layout and text rendering run without warnings
    return ax


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_no_pyplot_state(scores):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    ax = concept_distributions(scores, ["purple_ink"])
    assert isinstance(ax, Axes) and isinstance(ax.figure, Figure)
    assert plt.get_fignums() == before


def test_given_ax_is_used(scores):
    fig = Figure()
    ax = fig.add_subplot()
    assert concept_distributions(scores, ["ruler"], ax=ax) is ax


def test_image_gallery_titles_and_annotations():
    imgs = np.zeros((3, 10, 10, 3), np.uint8)
    imgs[1] = 255
    ax = _render(image_gallery(imgs, titles=["a", "b", "c"], annotations=[["x"], [], ["y", "z"]],
                               ncols=2))  # fmt: skip
    assert _texts(ax) == ["a", "x", "b", "c", "y", "z"]
    canvas = ax.images[0].get_array()
    assert canvas.max() == 1.0 and canvas.min() == 0.0  # white image and black images drawn
    with pytest.raises(DataError, match="one per image"):
        image_gallery(imgs, titles=["a"])
    with pytest.raises(DataError, match="one size"):
        image_gallery([imgs[0], np.zeros((4, 4, 3))])


def test_synthderm_montage_labels_match_the_batch(batch):
    ax = _render(synthderm_montage(batch, n=6, ncols=3, max_concepts=2, groups=["artifact"]))
    texts = _texts(ax)
    for i in range(6):
        assert batch.class_names[batch.labels[i]] in texts
        assert str(batch.site[i]) in texts
    art = [
        n
        for n, g in zip(batch.concept_names, batch.concept_groups, strict=True)
        if g == "artifact"
    ]
    shown = {t for t in texts if t in batch.concept_names}
    assert shown and shown <= set(art)
    assert not any(t in batch.concept_names and t not in art for t in texts)


def test_concept_distributions_by_class_and_site(scores):
    ax = _render(concept_distributions(scores, ["purple_ink", "ruler"], by="label"))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["purple_ink", "ruler"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == sorted(set(scores.label.values))
    ax = _render(concept_distributions(scores, ["ruler"], by="site"))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["site_a", "site_b", "site_c"]
    assert ax.get_title() == "concept scores by site"
    with pytest.raises(UnknownNameError, match="available"):
        concept_distributions(scores, ["nope"])
    with pytest.raises(UnknownNameError, match="sample coordinate"):
        concept_distributions(scores, by="hospital")


def test_concept_distributions_medians(scores):
    ax = concept_distributions(scores, ["purple_ink"], by="site")
    medians = [line.get_ydata()[0] for line in ax.lines if line.get_gid() == "median"]
    want = [np.median(scores.sel(concept="purple_ink").values[scores.site.values == s])
            for s in ("site_a", "site_b", "site_c")]  # fmt: skip
    np.testing.assert_allclose(medians, want)


def test_head_weights_cells_are_per_sd_weights(cbm):
    w = standardized_weights(cbm)
    ax = _render(head_weights(cbm, k=5))
    concepts = [t.get_text() for t in ax.get_yticklabels()]
    classes = [t.get_text() for t in ax.get_xticklabels()]
    assert classes == [str(c) for c in w["class"].values]
    imp = np.abs(w.values).mean(axis=0)
    top = [str(w.concept.values[j]) for j in np.argsort(-imp)[:5]]
    assert concepts == top
    np.testing.assert_allclose(ax.images[0].get_array(), w.sel(concept=top).values.T)
    cell = f"{float(w.sel(concept=top[0], **{'class': classes[0]})):+.2f}"
    assert _texts(ax)[0] in (cell, "0")
    assert "per SD" in ax.get_title()


def test_contribution_waterfall_ends_at_the_logit(cbm, scores):
    sub = scores.isel(sample=slice(0, 4))
    c = contributions(cbm, sub)
    logit = cbm.decision_function(sub)
    cls = "melanoma"
    k = list(cbm.classes_).index(cls)
    ax = _render(contribution_waterfall(c, 1, cls, max_concepts=4))
    bars = ax.patches
    end = bars[-1].get_x() + bars[-1].get_width()
    np.testing.assert_allclose(end, logit[1, k], atol=1e-9)
    np.testing.assert_allclose(bars[0].get_x(), float(c.base_value.sel({"class": cls})))
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    row = c.isel(sample=1).sel({"class": cls})
    first = str(row.concept.values[int(np.argmax(np.abs(row.values)))])
    assert ticks[0].startswith(f"{first} = ")
    assert ticks[-1].endswith("other concepts")
    sid = str(sub.sample.values[1])
    assert (
        ax.get_title() == f"sample {sid}: {cls} logit {logit[1, k]:.2f} "
        f"(base {float(c.base_value.sel({'class': cls})):.2f})"
    )
    # by id, and the default class is the predicted one
    ax = contribution_waterfall(c, sid)
    assert cbm.predict(sub)[1] in ax.get_title()
    with pytest.raises(UnknownNameError):
        contribution_waterfall(c, 0, "psoriasis")


def test_metric_table_cells_read_the_audit(audit_ds):
    ax = _render(metric_table(audit_ds))
    table = ax.tables[0]
    header = [table[0, j].get_text().get_text() for j in range(6)]
    assert header == ["model", "split", "accuracy", "balanced acc.", "macro AUROC", "ECE"]
    m = audit_ds.metrics.sel(model="cbm", split="site_c", group="all", metric="auroc")
    want = (
        f"{float(m.sel(stat='estimate')):.3f} [{float(m.sel(stat='ci_low')):.3f}, "
        f"{float(m.sel(stat='ci_high')):.3f}]"
    )
    assert table[3, 1].get_text().get_text() == "site_c"
    assert table[3, 4].get_text().get_text() == want
    assert ax.get_title() == "all: estimate [95% CI]"
    with pytest.raises(UnknownNameError, match="group"):
        metric_table(audit_ds, group="sex=f")


def test_metric_forest_points_and_intervals(audit_ds):
    ax = _render(metric_forest(audit_ds, "accuracy", group="worst:skin_tone"))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["cbm | site_a", "cbm | site_b", "cbm | site_c"]
    m = audit_ds.metrics.sel(model="cbm", group="worst:skin_tone", metric="accuracy")
    points = [line.get_xdata()[0] for line in ax.lines if line.get_marker() == "o"]
    np.testing.assert_allclose(points, m.sel(stat="estimate").values)
    assert ax.get_xlabel() == "accuracy"
    assert ax.get_title() == "accuracy, worst:skin_tone (95% CI)"
    with pytest.raises(DataError, match="audit"):
        metric_forest(xr.Dataset())


def test_intervention_curves_from_intervention_curve(cbm, scores):
    from conceptlens.masking import intervention_curve

    held = scores.site.values == "site_c"
    ic = intervention_curve(cbm, scores[held], "label", reference_scores=scores[~held],
                            n_random=2)  # fmt: skip
    ax = _render(intervention_curves({"site_c": ic}))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    auc = ic.auc.values
    assert legend == [
        f"site_c: uncertainty (AUC {auc[0]:.3f})",
        f"site_c: random (AUC {auc[1]:.3f})",
    ]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), ic.accuracy.sel(order="uncertainty"))
    assert ax.get_xlabel().startswith("concepts corrected")


def test_masking_grid_from_masking_study():
    from conceptlens.studies import masking_study
    from tests.studies._encoder import pooled_features
    from tests.studies._synth import synthderm_batch, synthderm_config

    ds = synthderm_batch(synthderm_config("confounded"), 120, seed=0, image_size=32).to_dataset()
    grid = masking_study(ds, roi="lesion_mask", encoder=pooled_features, models=["concept_head"],
                         conditions=["full", "no_roi", "only_roi"], n_boot=20)  # fmt: skip
    ax = _render(masking_grid(grid))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["full", "no_roi", "only_roi"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["full", "no_roi", "only_roi"]
    est = grid.macro_auroc.sel(model="concept_head", dilation=0, stat="estimate").values
    np.testing.assert_allclose(ax.images[0].get_array(), est)
    assert _texts(ax)[0].startswith(f"{est[0, 0]:.2f}\n[")
    assert ax.get_title() == "concept_head: macro AUROC, dilation 0"
    ax = masking_grid(grid, cls="melanoma")
    assert ax.get_title() == "concept_head: melanoma AUROC, dilation 0"
    with pytest.raises(UnknownNameError, match="model"):
        masking_grid(grid, model="linear_probe")


def test_names_with_dollar_signs_are_drawn_literally(scores):
    # names come from users' files: two '$' would be read as mathtext, typeset ('$x^2$')
    # or stop the drawing with a parse error ('a $\frac{$ b'); every text stays literal
    from matplotlib.figure import Figure as _Fig

    from conceptlens.heads import ConceptBottleneckClassifier

    odd = [r"a $\frac{$ b", "$x^2$ ink"]
    names = list(scores.concept.values)
    src = ["purple_ink", "ruler"]
    renamed = scores.assign_coords(
        concept=[odd[src.index(c)] if c in src else c for c in names],
        label=("sample", np.where(scores.label.values == "melanoma", "mel $1$", "other")),
    )
    cbm = ConceptBottleneckClassifier(C=0.5).fit(renamed, renamed.label.values)
    ax = _render(concept_distributions(renamed, odd, by="label"))
    assert [t.get_text() for t in ax.get_xticklabels()] == odd
    ax = _render(head_weights(cbm, k=5))
    assert "mel $1$" in [t.get_text() for t in ax.get_xticklabels()]
    sub = renamed.isel(sample=slice(0, 3))
    _render(contribution_waterfall(contributions(cbm, sub), 0, "mel $1$"))
    # an Axes the caller made before (its title Text predates the call) is literal too
    own = _Fig().add_subplot()
    own.set_title("keep")
    ax = _render(concept_distributions(renamed, odd, by="label", ax=own))
    assert all(
        not t.get_parse_math() for t in ax.figure.findobj(lambda a: hasattr(a, "get_parse_math"))
    )
