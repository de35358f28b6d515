from __future__ import annotations

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


def test_widget_without_ipywidgets_says_what_to_do(session_parts, monkeypatch):
    import sys

    clf, P, _ = session_parts
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import raises ImportError
    with pytest.raises(MissingDependencyError, match="add_box"):
        RegionSession(clf, P[0]).widget()


def test_widget_actions_equal_the_plain_function_calls(session_parts):
    """The real ipywidgets panel: each button press gives what the plain calls give, and
    the prediction and contributions shown are updated."""
    pytest.importorskip("ipywidgets")
    import ipywidgets as w

    clf, P, imgs = session_parts
    s = clf.atlas.image_size
    sess = RegionSession(clf, P[0], image=imgs[0], sample_id="case3")
    twin = RegionSession(clf, P[0], sample_id="case3")  # driven by plain method calls
    panel = sess.widget()
    assert isinstance(panel, w.VBox)
    coords_box, polarity, pick_row, button_row, status, contrib, out = panel.children
    assert isinstance(out, w.Output) and isinstance(contrib, w.HTML)
    buttons = {b.description: b for b in button_row.children}
    assert status.value == twin.summary()
    assert contrib.value == twin.contributions_html()

    def same(result):
        now = sess.result()
        np.testing.assert_allclose(now.activation.values, result.activation.values)
        np.testing.assert_allclose(now.proba.values, result.proba.values)
        assert status.value == twin.summary()
        assert contrib.value == twin.contributions_html()

    # draw a negative box over the top half
    box = (0, 0, s, s // 2)
    for c, v in zip(coords_box.children, box, strict=True):
        c.value = v
    polarity.value = "negative"
    buttons["add box"].click()
    assert sess.negative == [box]
    same(twin.add_box(box))
    np.testing.assert_allclose(
        sess.result().proba.values, region_feedback(clf, P[:1], negative=[box]).proba.values
    )
    # a positive box
    pos = (s // 4, s // 2, s, s)
    for c, v in zip(coords_box.children, pos, strict=True):
        c.value = v
    polarity.value = "positive"
    buttons["add box"].click()
    same(twin.add_box(pos, positive=True))
    # an empty box (x1 <= x0) is refused in the status line, the state is unchanged
    coords_box.children[0].value, coords_box.children[2].value = 10, 5
    before = status.value
    buttons["add box"].click()
    assert "empty" in status.value and status.value != before and len(sess.positive) == 1
    # reject a concept, drop prototypes (head refit), undo, reset
    concept, protos = pick_row.children
    concept.value = "ruler"
    buttons["reject concept"].click()
    same(twin.reject_concept("ruler"))
    protos.value = ("red_dots/1",)
    buttons["drop prototypes"].click()
    same(twin.drop_prototypes(["red_dots/1"]))
    assert "red_dots/1" not in protos.options and "red_dots/1" not in contrib.value
    buttons["undo"].click()
    same(twin.undo())
    assert "red_dots/1" in protos.options
    buttons["reset"].click()
    same(twin.reset())
    np.testing.assert_allclose(sess.result().proba.values, clf.predict_proba(P[:1]), atol=1e-9)
    plt.close("all")


def test_session_checks_its_inputs_up_front(session_parts):
    from sklearn.exceptions import NotFittedError

    from conceptlens.exceptions import ConfigError

    clf, P, imgs = session_parts
    s = clf.atlas.image_size
    with pytest.raises(NotFittedError):
        RegionSession(PrototypeClassifier(atlas=clf.atlas), P[0])
    with pytest.raises(DataError, match="sample 'c': patch embeddings of shape"):
        RegionSession(clf, P[0, :2, :2], sample_id="c")
    with pytest.raises(ConfigError, match="alpha must be in"):
        RegionSession(clf, P[0], alpha=5)
    with pytest.raises(DataError, match=rf"sample 'c': image has shape .*\({s}, {s}, 3\)"):
        RegionSession(clf, P[0], image=imgs[0, :10], sample_id="c")
    with pytest.raises(DataError, match=r"uint8 or float in \[0, 1\]"):
        RegionSession(clf, P[0], image=imgs[0].astype(float))
    RegionSession(clf, P[0], image=imgs[0] / 255.0)  # floats in [0, 1] are fine
    sess = RegionSession(clf, P[0])
    with pytest.raises(ConfigError, match="k must be an int >= 1"):
        sess.contributions(k=0)


def test_session_drop_out_of_order_leaves_no_trace(session_parts):
    from conceptlens.exceptions import ConfigError

    clf, P, _ = session_parts
    sess = RegionSession(clf, P[0])
    with pytest.raises(ConfigError, match="no prototypes given"):
        sess.drop_prototypes([])
    sess.drop_prototypes("ruler/0")  # a bare name is one name
    assert sess.dropped == ["ruler/0"] and "ruler/0" not in sess.model.prototypes_
    with pytest.raises(DataError, match="already removed"):
        sess.drop_prototypes(["ruler/0"])
    assert len(sess._history) == 1 and sess.dropped == ["ruler/0"]
    r = sess.undo()
    assert sess.dropped == [] and "ruler/0" in r.prototype.values
    # undo and reset with nothing to undo give the plain prediction
    np.testing.assert_allclose(sess.undo().proba.values, clf.predict_proba(P[:1]), atol=1e-9)


def test_widget_shows_every_refused_action_in_the_status_line(session_parts):
    """A ConfigError (drop with nothing picked) must not escape the button callback."""
    pytest.importorskip("ipywidgets")
    clf, P, _ = session_parts
    sess = RegionSession(clf, P[0])
    panel = sess.widget()
    _, _, _, button_row, status, _, _ = panel.children
    buttons = {b.description: b for b in button_row.children}
    buttons["drop prototypes"].click()  # nothing selected
    assert "no prototypes given" in status.value and sess._history == []


def test_refused_rejection_leaves_the_session_usable(session_parts):
    from conceptlens.exceptions import ConfigError

    clf, P, _ = session_parts
    unlabelled = PrototypeClassifier(atlas=clf.atlas, C=1.0).fit(P, clf.predict(P))
    sess = RegionSession(unlabelled, P[0])
    with pytest.raises(ConfigError, match="concept_labels"):
        sess.reject_concept("ruler")
    assert sess.rejected == [] and sess._history == []
    assert "rejected []" in sess.summary()  # raised ConfigError here before
