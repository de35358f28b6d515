"""SynthDerm generator: determinism, shapes, every concept drawn where it should be,
class-concept statistics, presets and captions."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conceptlens.exceptions import ConfigError, UnknownNameError
from conceptlens.synthderm import (
    SYNTHDERM_CLASSES,
    SYNTHDERM_CONCEPTS,
    SynthDerm,
    SynthDermConfig,
    generate_synthderm,
    list_synthderm_presets,
)
from conceptlens.synthderm._generator import _prob_tables, _sample_latents
from conceptlens.synthderm._presets import LESION_CONCEPTS
from conceptlens.synthderm._vocab import CONCEPT_PHRASES, PARAPHRASES, SYNTHDERM_ARTIFACTS

NAMES = [n for n, _ in SYNTHDERM_CONCEPTS]


@pytest.fixture(scope="module")
def iid_batch():
    return SynthDerm("iid").generate(384, seed=11)


def only(concept: str | None, base: str = "iid") -> SynthDermConfig:
    """A config in which exactly `concept` (or nothing) is present in every image."""
    cfg = SynthDermConfig.from_preset(base)
    cp = {c: dict.fromkeys(SYNTHDERM_CLASSES, float(c == concept)) for c in LESION_CONCEPTS}
    ap = {
        s: {k: {a: float(a == concept) for a in SYNTHDERM_ARTIFACTS} for k in SYNTHDERM_CLASSES}
        for s in cfg.sites
    }
    return cfg.replace(concept_probs=cp, artifact_probs=ap)


def auroc(score: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


# -- API contract ---------------------------------------------------------------------
def test_names_and_order_match_contract():
    assert SYNTHDERM_CLASSES == ("nevus", "melanoma", "seborrheic_keratosis")
    assert NAMES == [
        "asymmetry",
        "irregular_border",
        "large_diameter",
        "multiple_colors",
        "blue_white_veil",
        "regression_structures",
        "atypical_pigment_network",
        "irregular_dots_globules",
        "irregular_streaks",
        "milia_like_cysts",
        "comedo_like_openings",
        "dotted_vessels",
        "ruler",
        "purple_ink",
        "dark_corners",
        "hair",
        "gel_bubbles",
    ]
    groups = dict(SYNTHDERM_CONCEPTS)
    assert {groups[n] for n in NAMES[:3]} == {"morphology"}
    assert {groups[n] for n in NAMES[3:6]} == {"colour"}
    assert {groups[n] for n in NAMES[6:12]} == {"structure"}
    assert {groups[n] for n in NAMES[12:]} == {"artifact"}
    assert {"iid", "confounded", "skin-tone-shift"} <= set(list_synthderm_presets())


def test_shapes_and_dtypes(iid_batch):
    b = iid_batch
    n = 384
    assert len(b) == n
    assert b.images.shape == (n, 96, 96, 3) and b.images.dtype == np.uint8
    assert b.labels.shape == (n,) and b.labels.dtype == np.int64
    assert set(np.unique(b.labels)) == {0, 1, 2}
    assert b.class_names == SYNTHDERM_CLASSES
    assert b.concepts.shape == (n, 17) and b.concepts.dtype == np.uint8
    assert set(np.unique(b.concepts)) <= {0, 1}
    assert list(b.concept_names) == NAMES
    assert b.concept_groups == tuple(g for _, g in SYNTHDERM_CONCEPTS)
    assert b.site.shape == (n,) and set(b.site) <= {"site_a", "site_b", "site_c"}
    assert b.skin_tone.shape == (n,) and b.skin_tone.min() >= 1 and b.skin_tone.max() <= 6
    assert b.lesion_mask.shape == (n, 96, 96) and b.lesion_mask.dtype == bool
    assert sorted(b.artifact_masks) == sorted(SYNTHDERM_ARTIFACTS)
    for m in b.artifact_masks.values():
        assert m.shape == (n, 96, 96) and m.dtype == bool
    assert len(b.captions) == n and all(isinstance(c, str) and c for c in b.captions)
    assert len(set(b.ids)) == n


def test_same_seed_same_bytes_and_prefix_stable():
    a = SynthDerm("confounded").generate(70, seed=3)
    b = SynthDerm("confounded").generate(70, seed=3)
    assert a.images.tobytes() == b.images.tobytes()
    assert a.lesion_mask.tobytes() == b.lesion_mask.tobytes()
    for name in SYNTHDERM_ARTIFACTS:
        assert a.artifact_masks[name].tobytes() == b.artifact_masks[name].tobytes()
    assert a.captions == b.captions and a.ids == b.ids
    assert np.array_equal(a.concepts, b.concepts) and np.array_equal(a.site, b.site)
    short = SynthDerm("confounded").generate(5, seed=3)
    assert short.images.tobytes() == a.images[:5].tobytes()
    other = SynthDerm("confounded").generate(70, seed=4)
    assert other.images.tobytes() != a.images.tobytes()


def test_other_image_size():
    b = generate_synthderm(4, seed=0, image_size=160)
    assert b.images.shape == (4, 160, 160, 3)
    assert b.lesion_mask.shape == (4, 160, 160) and b.lesion_mask.any(axis=(1, 2)).all()


# -- each concept is drawn, where it should be ----------------------------------------
@pytest.mark.parametrize("concept", NAMES)
def test_each_concept_changes_pixels_where_it_should(concept):
    # Same seed, same skin and lesion; the only difference is the concept's layer.
    off = SynthDerm(only(None)).generate(8, seed=5)
    on = SynthDerm(only(concept)).generate(8, seed=5)
    assert on.concept(concept).all() and not off.concepts.any()
    diff = np.abs(on.images.astype(int) - off.images.astype(int)).max(axis=-1) > 30
    group = dict(SYNTHDERM_CONCEPTS)[concept]
    if group == "morphology":
        assert (on.lesion_mask != off.lesion_mask).any(axis=(1, 2)).all()
        return
    # every image shows a clearly visible change (>= 20 pixels, > 30 grey levels)
    assert (diff.sum(axis=(1, 2)) >= 20).all()
    if group == "artifact":
        mask = on.artifact_masks[concept]
        assert mask.any(axis=(1, 2)).all()
        assert not off.artifact_masks[concept].any()
        # the strongly changed pixels are (almost all) inside the dilated artifact mask
        grown = mask.copy()
        for axis in (1, 2):
            for shift in (-2, -1, 1, 2):
                grown |= np.roll(mask, shift, axis=axis)
        inside = (diff & grown).sum() / diff.sum()
        assert inside > 0.9
    else:
        # lesion concepts change pixels in or right around the lesion only
        lesion = off.lesion_mask
        ys, xs = np.mgrid[:96, :96]
        for i in range(len(on)):
            cy, cx = ys[lesion[i]].mean(), xs[lesion[i]].mean()
            radius = np.sqrt(lesion[i].sum() / np.pi)
            far = np.hypot(ys - cy, xs - cx) > 1.6 * radius + 3
            assert not (diff[i] & far).any()


def _purple(images: np.ndarray) -> np.ndarray:
    r, g, b = (images[..., c].astype(int) for c in range(3))
    return (b - g > 60) & (r - g > 30) & (b > r)


def test_purple_pixels_iff_purple_ink(iid_batch):
    count = _purple(iid_batch.images).sum(axis=(1, 2))
    ink = iid_batch.concept("purple_ink").astype(bool)
    assert ink.any() and (~ink).any()
    assert (count[ink] >= 30).all()
    assert (count[~ink] == 0).all()


def test_artifact_masks_nonempty_iff_present(iid_batch):
    for name in SYNTHDERM_ARTIFACTS:
        present = iid_batch.concept(name).astype(bool)
        area = iid_batch.artifact_masks[name].sum(axis=(1, 2))
        assert (area[present] > 0).all(), name
        assert (area[~present] == 0).all(), name
    assert iid_batch.lesion_mask.any(axis=(1, 2)).all()


def _shape_features(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area, elongation (ratio of the principal axes) and boundary**2/area of masks."""
    n = mask.shape[0]
    area = mask.sum(axis=(1, 2)).astype(float)
    ys, xs = np.mgrid[: mask.shape[1], : mask.shape[2]]
    elong = np.empty(n)
    for i in range(n):
        pts = np.stack([ys[mask[i]], xs[mask[i]]]).astype(float)
        ev = np.linalg.eigvalsh(np.cov(pts))
        elong[i] = np.sqrt(ev[-1] / ev[0])
    inner = mask.copy()
    for axis in (1, 2):
        for shift in (-1, 1):
            inner &= np.roll(mask, shift, axis=axis)
    boundary = (mask & ~inner).sum(axis=(1, 2))
    compact = boundary**2 / area
    return area, elong, compact


def test_shape_concepts_are_measurable_from_the_lesion_mask(iid_batch):
    area, elong, compact = _shape_features(iid_batch.lesion_mask)
    assert auroc(area, iid_batch.concept("large_diameter")) > 0.95
    assert auroc(elong, iid_batch.concept("asymmetry")) > 0.95
    assert auroc(compact, iid_batch.concept("irregular_border")) > 0.95


def _largest_blob(mask: np.ndarray, close: bool = False) -> np.ndarray:
    from scipy import ndimage

    out = np.zeros(mask.shape[0])
    for i, m in enumerate(mask):
        if close:  # bridge small gaps (e.g. the peppering inside regression areas)
            m = ndimage.binary_closing(m, iterations=1)
        labels, count = ndimage.label(m)
        if count:
            out[i] = np.bincount(labels.ravel())[1:].max()
    return out


def test_colour_concepts_have_their_colours(iid_batch):
    img = iid_batch.images.astype(int)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    lesion = iid_batch.lesion_mask
    bluish = _largest_blob((b - r > 25) & (b > 150) & lesion)
    assert auroc(bluish, iid_batch.concept("blue_white_veil")) > 0.95
    red = (r - g > 90) & (r - b > 70) & lesion
    assert auroc(_largest_blob(red), iid_batch.concept("multiple_colors")) > 0.95
    assert auroc(red.sum(axis=(1, 2)), iid_batch.concept("dotted_vessels")) > 0.7
    white = _largest_blob((img.min(axis=-1) > 200) & lesion, close=True)
    assert auroc(white, iid_batch.concept("regression_structures")) > 0.95


# -- sampling statistics -------------------------------------------------------------
@pytest.mark.parametrize("preset", ["iid", "confounded", "skin-tone-shift"])
def test_class_concept_frequencies_match_config(preset):
    cfg = SynthDermConfig.from_preset(preset)
    tables = _prob_tables(cfg)
    n = 60_000
    site, label, tone, concepts = _sample_latents(cfg, np.random.default_rng(0), n, tables)
    probs = tables[0]
    for s in range(len(cfg.sites)):
        for k in range(3):
            sel = (site == s) & (label == k)
            m = sel.sum()
            p = probs[s, k]
            got = concepts[sel].mean(axis=0)
            tol = 4.5 * np.sqrt(p * (1 - p) / m) + 1e-9
            assert (np.abs(got - p) <= tol).all(), (cfg.sites[s], SYNTHDERM_CLASSES[k])
            q = tables[1][s, k]
            tone_freq = np.bincount(tone[sel] - 1, minlength=6) / m
            assert (np.abs(tone_freq - q) <= 4.5 * np.sqrt(q * (1 - q) / m) + 1e-9).all()
    prior = np.array([cfg.class_priors[c] for c in SYNTHDERM_CLASSES])
    freq = np.bincount(label, minlength=3) / n
    assert np.allclose(freq, prior, atol=4.5 * np.sqrt(0.25 / n))


def test_generated_batch_uses_the_same_statistics():
    b = SynthDerm("iid").generate(1024, seed=2)
    probs = _prob_tables(SynthDermConfig.from_preset("iid"))[0][0]  # same at every site
    for k in range(3):
        sel = b.labels == k
        p = probs[k]
        tol = 4.5 * np.sqrt(p * (1 - p) / sel.sum())
        assert (np.abs(b.concepts[sel].mean(axis=0) - p) <= tol).all()


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x.astype(float), y.astype(float))[0, 1])


def test_confounded_preset_plants_a_site_dependent_shortcut():
    cfg = SynthDermConfig.from_preset("confounded")
    assert cfg.heldout_site == "site_c"
    tables = _prob_tables(cfg)
    site, label, _, concepts = _sample_latents(cfg, np.random.default_rng(1), 40_000, tables)
    mel = label == SYNTHDERM_CLASSES.index("melanoma")
    ink = concepts[:, NAMES.index("purple_ink")]
    ruler = concepts[:, NAMES.index("ruler")]
    veil = concepts[:, NAMES.index("blue_white_veil")]
    train = np.isin(site, [cfg.sites.index("site_a"), cfg.sites.index("site_b")])
    held = site == cfg.sites.index("site_c")
    assert _corr(ink[train], mel[train]) > 0.6
    assert _corr(ruler[train], mel[train]) > 0.45
    assert _corr(ink[held], mel[held]) < 0
    assert _corr(ruler[held], mel[held]) < 0
    # morphology keeps the same class link everywhere
    assert abs(_corr(veil[train], mel[train]) - _corr(veil[held], mel[held])) < 0.05


def test_skin_tone_shift_reverses_between_sites():
    cfg = SynthDermConfig.from_preset("skin-tone-shift")
    tables = _prob_tables(cfg)
    site, label, tone, _ = _sample_latents(cfg, np.random.default_rng(2), 30_000, tables)
    mel = label == 1
    nev = label == 0
    a = site == cfg.sites.index("site_a")
    c = site == cfg.sites.index("site_c")
    assert tone[a & mel].mean() + 1.5 < tone[a & nev].mean()
    assert tone[c & mel].mean() > tone[c & nev].mean() + 1.5


# -- captions ------------------------------------------------------------------------
def test_vocabulary_is_rich_and_separated():
    for name in NAMES:
        assert len(CONCEPT_PHRASES[name]) >= 3, name
        assert len(PARAPHRASES[name]) >= 2, name
    phrases = [(n, p.lower()) for n, ps in CONCEPT_PHRASES.items() for p in ps]
    # no phrase of one concept is a substring of another concept's phrase
    for n1, p1 in phrases:
        for n2, p2 in phrases:
            if n1 != n2:
                assert p1 not in p2, (p1, p2)


def test_captions_mention_present_concepts_only_and_never_paraphrases():
    b = SynthDerm("confounded").generate(768, seed=9)
    captions = [c.lower() for c in b.captions]
    for caption, row in zip(captions, b.concepts, strict=True):
        for j, name in enumerate(NAMES):
            said = any(p.lower() in caption for p in CONCEPT_PHRASES[name])
            assert said == bool(row[j]), (name, caption)
        for held_out in PARAPHRASES.values():
            for p in held_out:
                assert p.lower() not in caption, (p, caption)
    # varied: many distinct sentence openings, the class is named sometimes
    assert len({c.split(" ")[0] for c in captions}) >= 4
    named = np.mean(["melanoma" in c or "nevus" in c or "keratosis" in c for c in captions])
    assert 0.3 < named < 0.7
    # the order of findings varies
    two = [c for c, row in zip(captions, b.concepts, strict=True) if row.sum() >= 2]
    assert len(set(two)) == len(two) or len(two) > 100


# -- validation ----------------------------------------------------------------------
def test_unknown_preset_lists_presets():
    with pytest.raises(UnknownNameError, match="confounded"):
        SynthDerm("nope")


def test_config_validation_messages():
    cfg = SynthDermConfig.from_preset("iid")
    with pytest.raises(ConfigError, match=r"purple_ink.*not a probability"):
        cfg.with_artifact_probs(purple_ink=1.5)
    with pytest.raises(ConfigError, match="unknown artifact"):
        cfg.with_artifact_probs(tattoo=0.5)
    with pytest.raises(ConfigError, match="unknown site"):
        cfg.with_artifact_probs(site="site_z", ruler=0.5)
    bad = {**{k: dict(v) for k, v in cfg.concept_probs.items()}, "sparkle": {"nevus": 0.1}}
    with pytest.raises(ConfigError, match="unknown concept"):
        cfg.replace(concept_probs=bad)
    with pytest.raises(ConfigError, match="sum"):
        cfg.replace(class_priors={"nevus": 0.5, "melanoma": 0.5, "seborrheic_keratosis": 0.5})
    with pytest.raises(ConfigError, match="heldout_site"):
        cfg.replace(heldout_site="site_q")
    with pytest.raises(ConfigError, match="image_size"):
        SynthDerm("iid", image_size=8)
    with pytest.raises(ConfigError, match="positive integer"):
        SynthDerm("iid").generate(0)


def test_with_artifact_probs_targets_one_cell():
    cfg = SynthDermConfig.from_preset("iid").with_artifact_probs(
        site="site_b", cls="melanoma", purple_ink=0.9
    )
    table = cfg.artifact_table()
    assert table.loc[("site_b", "melanoma"), "purple_ink"] == 0.9
    assert table.loc[("site_a", "melanoma"), "purple_ink"] == 0.25
    assert table.shape == (9, 5)


@pytest.mark.parametrize(
    "name", ["SynthDerm", "write_synthderm", "CONCEPT_PHRASES", "synthderm_bayes_accuracy"]
)
def test_old_data_path_still_resolves_with_a_future_warning(name: str) -> None:
    import importlib

    import conceptlens.data

    with pytest.warns(FutureWarning, match=rf"conceptlens\.data\.{name} moved") as record:
        old = getattr(conceptlens.data, name)
    module = conceptlens.data._MOVED_TO_SYNTHDERM[name]
    assert old is getattr(importlib.import_module(module), name)
    # the import the warning suggests works
    suggested = re.search(r"`(from [\w.]+ import \w+)`", str(record[0].message)).group(1)
    namespace: dict = {}
    exec(suggested, namespace)
    assert namespace[name] is old
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        conceptlens.data.nope  # noqa: B018
