from __future__ import annotations

import importlib.util

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from conceptlens.exceptions import DataError, MissingDependencyError, UnknownNameError
from conceptlens.spatial import PrototypeClassifier, RegionSession, build_atlas, region_feedback


@pytest.fixture(scope="module")
def session_parts(tiny, toy_bank):
    s = tiny.image_size
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, (30, s, s, 3), dtype=np.uint8)
    P = tiny.patch_embeddings(imgs)[0]
    atlas = build_atlas(tiny, P, toy_bank, n_prototypes=2, top_fraction=0.2)
    y = np.where(rng.random(30) > 0.5, "malignant", "benign")
    labels = rng.random((30, 3)) > 0.5
    clf = PrototypeClassifier(atlas=atlas, C=1.0).fit(P, y, concept_labels=labels)
    return clf, P, imgs


def test_session_actions_equal_the_plain_functions(session_parts):
    clf, P, imgs = session_parts
    s = clf.atlas.image_size
    sess = RegionSession(clf, P[0], image=imgs[0], sample_id="case1")
    r0 = sess.result()
    np.testing.assert_allclose(r0.proba.values, clf.predict_proba(P[:1]), atol=1e-9)
    box = (0, 0, s // 2, s // 2)
    r1 = sess.add_box(box)
    ref = region_feedback(clf, P[:1], negative=[box])
    np.testing.assert_allclose(r1.activation.values, ref.activation.values)
    r2 = sess.add_box((s // 2, s // 2, s, s), positive=True)
    ref = region_feedback(clf, P[:1], negative=[box], positive=[(s // 2, s // 2, s, s)])
    np.testing.assert_allclose(r2.activation.values, ref.activation.values)
    r3 = sess.reject_concept("ruler")
    ref = region_feedback(
        clf, P[:1], negative=[box], positive=[(s // 2, s // 2, s, s)], reject=["ruler"]
    )
    np.testing.assert_allclose(r3.activation.values, ref.activation.values)
    r4 = sess.drop_prototypes(["red_dots/0"])
    assert "red_dots/0" not in r4.prototype.values and sess.dropped == ["red_dots/0"]
    assert "case1" in sess.summary() and "rejected ['ruler']" in sess.summary()
    top = sess.contributions(k=2)
    assert top.sizes["prototype"] == 2
    # undo in reverse order
    np.testing.assert_allclose(sess.undo().activation.values, r3.activation.values)
    np.testing.assert_allclose(sess.undo().activation.values, r2.activation.values)
    np.testing.assert_allclose(sess.reset().proba.values, r0.proba.values)


def test_session_plot_draws_top_prototypes(session_parts):
    clf, P, imgs = session_parts
    sess = RegionSession(clf, P[1], image=imgs[1])
    axes = sess.plot(k=2)
    assert len(axes) == 3 and axes[0].get_title() == "image"
    assert axes[1].get_title() in clf.prototypes_
    plt.close("all")


def test_session_errors(session_parts):
    clf, P, _ = session_parts
    s = clf.atlas.image_size
    sess = RegionSession(clf, P[0], sample_id="case9")
    with pytest.raises(DataError, match=r"sample 'case9': negative box .* outside"):
        sess.add_box((0, 0, s + 5, 3))
    assert sess.negative == []  # a rejected box leaves the state unchanged
    with pytest.raises(DataError, match="sample 'case9': positive mask is empty"):
        sess.add_mask(np.zeros((s, s), bool), positive=True)
    with pytest.raises(UnknownNameError):
        sess.reject_concept("veil")
    with pytest.raises(DataError, match="one image"):
        RegionSession(clf, P[:2])
    with pytest.raises(DataError, match="pass image="):
        sess.plot()


@pytest.mark.skipif(importlib.util.find_spec("ipywidgets") is not None, reason="installed")
def test_widget_without_ipywidgets_says_what_to_do(session_parts):
    clf, P, _ = session_parts
    with pytest.raises(MissingDependencyError, match="add_box"):
        RegionSession(clf, P[0]).widget()


class _W:
    """Minimal stand-in for an ipywidgets widget (value + children + click)."""

    def __init__(self, *args, **kw):
        self.children = args[0] if args else []
        self.__dict__.update(kw)
        self._click = None

    def on_click(self, fn):
        self._click = fn

    def click(self):
        self._click(self)

    def clear_output(self, wait=False):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_widget_buttons_call_the_session_methods(session_parts, monkeypatch):
    import sys
    import types

    fake = types.ModuleType("ipywidgets")
    for name in (
        "BoundedIntText",
        "ToggleButtons",
        "Dropdown",
        "SelectMultiple",
        "HTML",
        "Output",
        "Button",
        "HBox",
        "VBox",
    ):
        setattr(fake, name, _W)
    monkeypatch.setitem(sys.modules, "ipywidgets", fake)
    clf, P, _ = session_parts
    sess = RegionSession(clf, P[0], sample_id="case3")
    panel = sess.widget()
    coords_box, polarity, pick_row, button_row, status, _out = panel.children
    buttons = {b.description: b for b in button_row.children}
    s = clf.atlas.image_size
    for c, v in zip(coords_box.children, (0, 0, s // 2, s // 2), strict=True):
        c.value = v
    polarity.value = "negative"
    buttons["add box"].click()
    assert sess.negative == [(0, 0, s // 2, s // 2)] and "case3" in status.value
    coords_box.children[2].value = s + 10  # outside: error shown, state unchanged
    buttons["add box"].click()
    assert "outside" in status.value and len(sess.negative) == 1
    concept, protos = pick_row.children
    concept.value = "ruler"
    buttons["reject concept"].click()
    assert sess.rejected == ["ruler"]
    protos.value = ("red_dots/1",)
    buttons["drop prototypes"].click()
    assert "red_dots/1" not in sess.model.prototypes_
    buttons["undo"].click()
    assert "red_dots/1" in sess.model.prototypes_
    buttons["reset"].click()
    assert sess.negative == [] and sess.rejected == []
