"""ConceptSegmenter: pixel filter bank, classifier, SynthDerm localisation, save/load, errors."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import xarray as xr
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

import conceptlens as cl
from conceptlens.exceptions import ConfigError, DataError, MissingFileError, UnknownNameError
from conceptlens.spatial import (
    ConceptSegmenter,
    mask_iou,
    pixel_feature_names,
    pixel_features,
    pointing_game,
)
from conceptlens.spatial._pixel import _fit_classifier, default_sigmas

FAST = {"max_pixels": 3000, "max_iter": 60}


@pytest.fixture(scope="module")
def derm_split():
    gen = cl.SynthDerm("confounded")
    return gen.generate(40, seed=21), gen.generate(24, seed=22)


@pytest.fixture(scope="module")
def artifact_seg(lit, derm_split):
    train, _ = derm_split
    masks = {c: train.artifact_masks[c] for c in ("ruler", "purple_ink")}
    seg = ConceptSegmenter(features="both", classifier="logistic", max_pixels=6000)
    return seg.fit(lit, train.images, masks)


# ----------------------------------------------------------------------------- filter bank
def _dense_conv(img, ky, kx):
    """Direct 2-D convolution of ``img`` with the separable kernel ky x kx, the border
    reflected as scipy.ndimage's 'reflect' (numpy 'symmetric')."""
    r = len(ky) // 2
    pad = np.pad(img, r, mode="symmetric")
    h, w = img.shape
    out = np.zeros_like(img)
    for a in range(-r, r + 1):
        for b in range(-r, r + 1):
            out += ky[a + r] * kx[b + r] * pad[r - a : r - a + h, r - b : r - b + w]
    return out


def test_hessian_and_log_match_a_dense_reference():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    s = 1.3
    feats = pixel_features(img, sigmas=[s])
    names = pixel_feature_names([s])
    assert feats.shape == (len(names), 24, 20) and feats.dtype == np.float32
    intensity = img.astype(np.float64).mean(axis=-1) / 255.0
    # sampled Gaussian and its derivatives, truncated at 4 sigma (as scipy does)
    r = int(4 * s + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * s * s))
    g /= g.sum()
    d1 = -x / s**2 * g
    d2 = (x**2 - s**2) / s**4 * g
    hyy = _dense_conv(intensity, d2, g)
    hxx = _dense_conv(intensity, g, d2)
    hxy = _dense_conv(intensity, d1, d1)
    hess = np.stack([np.stack([hyy, hxy], -1), np.stack([hxy, hxx], -1)], -2)
    eig = np.linalg.eigvalsh(hess) * s * s  # ascending
    np.testing.assert_allclose(feats[names.index(f"hessian_lo_s{s:g}")], eig[..., 0], atol=2e-4)
    np.testing.assert_allclose(feats[names.index(f"hessian_hi_s{s:g}")], eig[..., 1], atol=2e-4)
    np.testing.assert_allclose(
        feats[names.index(f"log_intensity_s{s:g}")], s * s * (hxx + hyy), atol=2e-4
    )
    np.testing.assert_allclose(
        feats[names.index(f"gauss_intensity_s{s:g}")], _dense_conv(intensity, g, g), atol=1e-5
    )


def _frangi_reference(eig, bright, beta=0.5, c=0.1):
    """Frangi's 2-D vesselness, pixel by pixel, from ascending eigenvalue pairs."""
    out = np.zeros(eig.shape[:-1])
    for idx in np.ndindex(*out.shape):
        a, b = sorted(eig[idx], key=abs)  # |l1| <= |l2|
        if b == 0 or (b > 0) == bright:
            continue
        out[idx] = np.exp(-((a / b) ** 2) / (2 * beta**2)) * (
            1 - np.exp(-(a * a + b * b) / (2 * c * c))
        )
    return out


def test_vesselness_and_local_std_match_a_dense_reference():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (22, 18, 3), dtype=np.uint8)
    img[:, 6] = 250  # a bright line
    img[11, :] = 5  # and a dark one
    s = 1.1
    feats = pixel_features(img, sigmas=[s], vesselness=True, local_std=True)
    names = pixel_feature_names([s], vesselness=True, local_std=True)
    assert feats.shape == (len(names), 22, 18)
    assert names[-4:] == [f"vessel_bright_s{s:g}", f"vessel_dark_s{s:g}",
                          f"std_intensity_s{s:g}", f"std_chroma_s{s:g}"]  # fmt: skip
    # the base rows do not change with the options
    np.testing.assert_array_equal(feats[:13], pixel_features(img, sigmas=[s]))
    x = img.astype(np.float64) / 255.0
    intensity = x.mean(axis=-1)
    o1 = (x[..., 0] - x[..., 1]) / np.sqrt(2)
    o2 = (x[..., 0] + x[..., 1] - 2 * x[..., 2]) / np.sqrt(6)
    chroma = np.hypot(o1, o2)
    r = int(4 * s + 0.5)
    u = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(u**2) / (2 * s * s))
    g /= g.sum()
    d1 = -u / s**2 * g
    d2 = (u**2 - s**2) / s**4 * g
    hyy, hxx = _dense_conv(intensity, d2, g), _dense_conv(intensity, g, d2)
    hxy = _dense_conv(intensity, d1, d1)
    eig = np.linalg.eigvalsh(np.stack([np.stack([hyy, hxy], -1), np.stack([hxy, hxx], -1)], -2))
    eig *= s * s
    bright, dark = _frangi_reference(eig, True), _frangi_reference(eig, False)
    np.testing.assert_allclose(feats[names.index(f"vessel_bright_s{s:g}")], bright, atol=1e-4)
    np.testing.assert_allclose(feats[names.index(f"vessel_dark_s{s:g}")], dark, atol=1e-4)
    assert bright[:, 6].mean() > 5 * bright[:, 2].mean()  # the bright line, not the dark
    assert dark[11].mean() > 5 * dark[3].mean()
    for k, ch in (("intensity", intensity), ("chroma", chroma)):
        mean = _dense_conv(ch, g, g)
        ref = np.sqrt(np.maximum(_dense_conv(ch * ch, g, g) - mean * mean, 0))
        np.testing.assert_allclose(feats[names.index(f"std_{k}_s{s:g}")], ref, atol=2e-4)


def test_colour_channels_and_default_scales():
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 0] = 255  # pure red
    f = pixel_features(img, sigmas=[1.0])
    names = pixel_feature_names([1.0])
    assert f[names.index("intensity")].max() == pytest.approx(1 / 3, abs=1e-6)
    assert f[names.index("opp_rg")].min() == pytest.approx(1 / np.sqrt(2), abs=1e-6)
    assert f[names.index("opp_yb")].min() == pytest.approx(1 / np.sqrt(6), abs=1e-6)
    assert f[names.index("chroma")].min() == pytest.approx(np.sqrt(1 / 2 + 1 / 6), abs=1e-6)
    assert default_sigmas(96) == (0.5, 0.7, 1.0, 1.6, 2.5, 4.0)
    assert default_sigmas(192) == (1.0, 1.4, 2.0, 3.2, 5.0, 8.0)
    with pytest.raises(ConfigError, match="positive"):
        pixel_features(img, sigmas=[0.0])


# ----------------------------------------------------------------------------- classifier
def test_logistic_solver_matches_sklearn():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 5))
    y = x @ np.array([1.5, -2.0, 0.0, 0.5, 1.0]) + 0.3 + rng.logistic(size=300) > 0
    w = np.where(y, 0.5 / y.sum(), 0.5 / (~y).sum())
    alpha = 0.01
    ours = _fit_classifier(x, y.astype(float), w, hidden=0, alpha=alpha, max_iter=500, seed=0)
    ref = LogisticRegression(C=1 / alpha, tol=1e-12, max_iter=10_000).fit(x, y, sample_weight=w)
    np.testing.assert_allclose(ours["w"], ref.coef_[0], atol=2e-4)
    np.testing.assert_allclose(ours["b"], ref.intercept_[0], atol=2e-4)


def test_mlp_fits_a_nonlinear_concept_that_logistic_cannot():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 2))
    y = (np.abs(x[:, 0]) < 0.7).astype(float)  # a band: not linearly separable
    w = np.where(y > 0, 0.5 / y.sum(), 0.5 / (1 - y).sum())
    kw = {"alpha": 1e-4, "max_iter": 300, "seed": 0}
    lin = _fit_classifier(x, y, w, hidden=0, **kw)
    mlp = _fit_classifier(x, y, w, hidden=16, **kw)
    acc_lin = np.mean(((x @ lin["w"] + lin["b"]) > 0) == (y > 0))
    h = np.maximum(x @ mlp["w1"] + mlp["b1"], 0)
    acc_mlp = np.mean(((h @ mlp["w2"] + mlp["b2"]) > 0) == (y > 0))
    assert acc_mlp > 0.95 and acc_lin < 0.75


# ----------------------------------------------------------------------------- SynthDerm
def test_segmenter_localises_artifacts_on_held_out_images(lit, derm_split, artifact_seg):
    _, test = derm_split
    maps = artifact_seg.predict_maps(lit, test.images)
    assert maps.dims == ("sample", "concept", "y", "x")
    assert maps.shape == (24, 2, 96, 96) and maps.dtype == np.float32
    assert list(maps.concept.values) == ["ruler", "purple_ink"]
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    rng = np.random.default_rng(0)
    for c in ("ruler", "purple_ink"):
        k = test.artifact_masks[c]
        present = k.reshape(len(k), -1).any(axis=1)
        assert present.sum() >= 5
        m, k = maps.sel(concept=c).values[present], k[present]
        iou = float(mask_iou(m, k, threshold=0.5).mean())
        # what a segmenter returning the lesion, or noise, would get with the same metric
        lesion = float(mask_iou(test.lesion_mask[present].astype(float), k).mean())
        noise = float(mask_iou(rng.random(m.shape), k).mean())
        assert lesion < 0.2 and noise < 0.25
        assert iou > 0.6, (c, iou)
        assert float(pointing_game(m, k).mean()) >= 0.8
    # the provenance of the fit
    assert artifact_seg.n_train_images_ == 40
    assert artifact_seg.backbone_ == lit.name
    px = artifact_seg.n_train_pixels_["ruler"]
    assert px["positive"] == 3000 and px["negative"] == 3000


def test_probabilities_are_shifted_to_the_training_pixel_prior(lit, derm_split):
    """predict_maps = expit(logistic logit + log(pi / (1 - pi))), computed by hand from
    the saved weights, the filter bank and the masks' pixel fraction."""
    train, test = derm_split
    masks = {"ruler": train.artifact_masks["ruler"][:10], "lesion": train.lesion_mask[:10]}
    seg = ConceptSegmenter(features="pixel", classifier="logistic", **FAST)
    seg.fit(lit, train.images[:10], masks)
    for c, m in masks.items():
        assert seg.pixel_prior_[c] == pytest.approx(m.sum() / m.size, rel=1e-12)
    # the default filter bank: the base scales at 96 px, with the local standard deviation
    assert seg.feature_names_ == pixel_feature_names(default_sigmas(96), local_std=True)
    img = test.images[0]
    x = pixel_features(img, seg.sigmas_, local_std=True).reshape(len(seg.feature_names_), -1).T
    x = (x.astype(np.float64) - seg.feature_mean_) / seg.feature_scale_
    z = x @ seg.weights_["w"].T.astype(np.float64) + seg.weights_["b"]  # (P, 2) balanced
    pi = np.array([masks[c].mean() for c in seg.concepts_])
    want = 1 / (1 + np.exp(-(z + np.log(pi / (1 - pi)))))
    got = seg.predict_maps(lit, img[None])
    bal = seg.predict_maps(lit, img[None], balanced=True)
    assert got.attrs["probability"] == "pixel prior"
    assert bal.attrs["probability"] == "class-balanced"
    for k, c in enumerate(seg.concepts_):
        np.testing.assert_allclose(got.sel(concept=c).values[0].ravel(), want[:, k], atol=2e-5)
        np.testing.assert_allclose(
            bal.sel(concept=c).values[0].ravel(), 1 / (1 + np.exp(-z[:, k])), atol=2e-5
        )
    # a rare concept: the prior-shifted probabilities are lower everywhere
    assert pi[0] < 0.1 and (got.values[0, 0] <= bal.values[0, 0] + 1e-7).all()
    with pytest.raises(ConfigError, match="balanced"):
        seg.predict_maps(lit, img[None], balanced="yes")


def test_subset_of_concepts_and_dataset_input(lit, derm_split, artifact_seg):
    _, test = derm_split
    full = artifact_seg.predict_maps(lit, test.images[:3])
    ds = test.to_dataset()
    one = artifact_seg.predict_maps(lit, ds, concepts=["purple_ink"])
    assert list(one.sample.values[:3]) == list(test.ids[:3])
    np.testing.assert_allclose(
        one.values[:3, 0], full.sel(concept="purple_ink").values, rtol=1e-5, atol=1e-6
    )


def test_maps_plot_with_plot_concept_maps(lit, derm_split, artifact_seg):
    from conceptlens.plot import plot_concept_maps

    _, test = derm_split
    maps = artifact_seg.predict_maps(lit, test.images[:2])
    axes = plot_concept_maps(test.images[1], maps, sample=1)
    assert [ax.get_title() for ax in axes] == ["image", "ruler", "purple_ink"]
    drawn = axes[2].get_images()[-1].get_array()
    np.testing.assert_allclose(drawn, maps.sel(concept="purple_ink").values[1], rtol=1e-6)


def test_training_pixels_do_not_depend_on_the_features(lit, derm_split):
    """The seeded pixel sample is the same whether or not tokens are used (fair ablations):
    the colour channels, the first 4 features, then have the same means over it."""
    train, _ = derm_split
    masks = {"ruler": train.artifact_masks["ruler"][:8]}
    means = []
    for features in ("pixel", "both"):
        seg = ConceptSegmenter(features=features, classifier="logistic", **FAST)
        means.append(seg.fit(lit, train.images[:8], masks).feature_mean_[:4])
    np.testing.assert_allclose(means[0], means[1], rtol=1e-6)


# ----------------------------------------------------------------------------- save / load
@pytest.mark.parametrize(
    ("classifier", "features"), [("logistic", "both"), ("mlp", "pixel"), ("mlp", "token")]
)
def test_save_load_round_trip(lit, derm_split, tmp_path, classifier, features):
    train, test = derm_split
    masks = {"hair": train.artifact_masks["hair"], "lesion": train.lesion_mask}
    seg = ConceptSegmenter(classifier=classifier, features=features, hidden=8, **FAST)
    seg.fit(lit, train.images[:12], {c: m[:12] for c, m in masks.items()})
    path = seg.save(tmp_path / "seg")
    assert sorted(p.name for p in path.iterdir()) == ["segmenter.json", "segmenter.safetensors"]
    back = ConceptSegmenter.load(path)
    a, b = seg.predict_maps(lit, test.images[:3]), back.predict_maps(lit, test.images[:3])
    np.testing.assert_array_equal(a.values, b.values)
    assert a.attrs == b.attrs and back.get_params() == seg.get_params()
    meta = json.loads((path / "segmenter.json").read_text())
    assert meta["backbone"] == lit.name and meta["concepts"] == ["hair", "lesion"]
    assert meta["n_train_images"] == 12 and meta["supervised"] == "masks"
    n_hair = int(masks["hair"][:12].sum())  # fewer than 1500: all of them are taken
    assert meta["n_train_pixels"]["hair"] == {"positive": min(n_hair, 1500), "negative": 1500}
    assert meta["n_train_pixels"]["lesion"] == {"positive": 1500, "negative": 1500}
    assert meta["feature_names"] == seg.feature_names_
    assert meta["pixel_prior"] == seg.pixel_prior_ == back.pixel_prior_
    assert meta["pixel_prior"]["lesion"] == pytest.approx(masks["lesion"][:12].mean())
    assert any(n.startswith("token_pc") for n in seg.feature_names_) == (features != "pixel")
    assert any(n.startswith("hessian") for n in seg.feature_names_) == (features != "token")
    # saving again replaces the folder as a whole
    seg.save(path)
    assert ConceptSegmenter.load(path).concepts_ == ["hair", "lesion"]


def test_tiny_vit_with_bank_features_round_trip(tiny, toy_bank, tmp_path):
    s = tiny.image_size
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 120, (6, s, s, 3), dtype=np.uint8)
    masks = np.zeros((6, s, s), bool)
    for i in range(6):  # a bright square: learnable from the pixel features
        y0, x0 = rng.integers(0, s - 10, 2)
        masks[i, y0 : y0 + 9, x0 : x0 + 9] = True
        imgs[i][masks[i]] = 250
    seg = ConceptSegmenter(
        features="both", bank=toy_bank, n_components=4, classifier="logistic", **FAST
    )
    seg.fit(tiny, imgs, xr.DataArray(masks[:, None], dims=("sample", "concept", "y", "x"),
                                     coords={"concept": ["square"]}))  # fmt: skip
    assert sum(n.startswith("concept_map_") for n in seg.feature_names_) == len(toy_bank)
    maps = seg.predict_maps(tiny, imgs)
    assert float(mask_iou(maps.sel(concept="square").values, masks).mean()) > 0.8
    back = ConceptSegmenter.load(seg.save(tmp_path / "tiny"))
    np.testing.assert_array_equal(back.predict_maps(tiny, imgs).values, maps.values)


# ----------------------------------------------------------------------------- bad input
def test_bad_masks_are_refused_naming_the_concept(lit, derm_split):
    train, _ = derm_split
    imgs = train.images[:4]
    seg = ConceptSegmenter(**FAST)
    with pytest.raises(DataError, match=r"'ruler'.*shape"):
        seg.fit(lit, imgs, {"ruler": train.artifact_masks["ruler"][:4, :48, :48]})
    with pytest.raises(DataError, match=r"'hair'.*no positive pixel"):
        seg.fit(lit, imgs, {"hair": np.zeros((4, 96, 96), bool)})
    with pytest.raises(DataError, match=r"'ruler' must be bool or 0/1"):
        seg.fit(lit, imgs, {"ruler": np.full((4, 96, 96), 0.5)})
    nan = train.artifact_masks["ruler"][:4].astype(float)
    nan[0, 0, 0] = np.nan  # NaN was read as inside the mask
    with pytest.raises(DataError, match=r"'ruler' hold NaN"):
        seg.fit(lit, imgs, {"ruler": nan})
    with pytest.raises(DataError, match=r"sample 'img000001'.*differs"):
        seg.fit(lit, [imgs[0], imgs[1][:90]], {"ruler": np.ones((2, 96, 96), bool)})
    with pytest.raises(DataError, match=r"xr.DataArray"):
        seg.fit(lit, imgs, np.zeros((4, 1, 96, 96), bool))
    ds = train.to_dataset()
    wrong_order = xr.DataArray(
        train.lesion_mask[::-1, None],
        dims=("sample", "concept", "y", "x"),
        coords={"sample": list(train.ids[::-1]), "concept": ["lesion"]},
    )
    with pytest.raises(DataError, match="same sample order"):
        seg.fit(lit, ds, wrong_order)
    with pytest.raises(ConfigError, match="classifier"):
        ConceptSegmenter(classifier="forest").fit(lit, imgs, {"ruler": np.ones((4, 96, 96))})
    with pytest.raises(ConfigError, match="sigmas"):
        ConceptSegmenter(sigmas=["wide"]).fit(lit, imgs, {"ruler": np.ones((4, 96, 96))})
    with pytest.raises(ConfigError, match="features='pixel' uses none"):
        ConceptSegmenter(bank="synthderm").fit(lit, imgs, {"ruler": np.ones((4, 96, 96))})


def test_bad_predict_input_is_refused(lit, derm_split, artifact_seg):
    _, test = derm_split
    with pytest.raises(NotFittedError):
        ConceptSegmenter().predict_maps(lit, test.images[:1])
    with pytest.raises(UnknownNameError, match=r"'hair'.*not trained"):
        artifact_seg.predict_maps(lit, test.images[:1], concepts=["hair", "ruler"])
    with pytest.raises(DataError, match="sample 'img000000'"):
        artifact_seg.predict_maps(lit, test.images[:1, :64, :64])
    other = types.SimpleNamespace(name="another-backbone", image_size=96)
    with pytest.raises(ConfigError, match="'another-backbone'"):
        artifact_seg.predict_maps(other, test.images[:1])


def test_damaged_files_are_refused(artifact_seg, tmp_path):
    path = artifact_seg.save(tmp_path / "seg")
    with pytest.raises(MissingFileError, match=r"segmenter.json"):
        ConceptSegmenter.load(tmp_path / "nothing")
    blob = (path / "segmenter.safetensors").read_bytes()
    (path / "segmenter.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="safetensors"):
        ConceptSegmenter.load(path)
    path = artifact_seg.save(tmp_path / "seg2")
    meta = json.loads((path / "segmenter.json").read_text())
    meta["concepts"] = ["ruler"]  # the arrays hold two concepts
    meta["pixel_prior"] = {"ruler": meta["pixel_prior"]["ruler"]}
    (path / "segmenter.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="shape"):
        ConceptSegmenter.load(path)
    meta = json.loads((path / "segmenter.json").read_text())
    meta["concepts"] = ["ruler", "purple_ink"]
    meta["format"] = 1  # written before the pixel priors
    del meta["pixel_prior"]
    (path / "segmenter.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"format 1.*older conceptlens.*fit the segmenter again"):
        ConceptSegmenter.load(path)
    meta["format"] = 2
    (path / "segmenter.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="'pixel_prior' is missing"):
        ConceptSegmenter.load(path)
    (path / "segmenter.json").write_text("{not json")
    with pytest.raises(DataError, match="segmenter description"):
        ConceptSegmenter.load(path)


def test_save_never_replaces_a_file_or_a_foreign_folder(artifact_seg, tmp_path):
    """save replaces only a folder it wrote (or an empty one): a user's file or a folder
    holding other files is refused and left as it was."""
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    with pytest.raises(ConfigError, match="is a file"):
        artifact_seg.save(afile)
    assert afile.read_text() == "mine"
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="holds other files"):
        artifact_seg.save(folder)
    assert (folder / "keep.csv").read_text() == "a,b\n"
    path = artifact_seg.save(tmp_path / "seg")
    assert artifact_seg.save(path) == path  # its own folder is replaced


def test_one_concept_name_as_a_string(lit, derm_split, artifact_seg):
    _, test = derm_split
    one = artifact_seg.predict_maps(lit, test.images[:2], concepts="ruler")
    assert list(one.concept.values) == ["ruler"]


@pytest.mark.parametrize(
    ("scale", "dtype", "match"),
    [(1.0, np.float64, r"finite values in \[0, 1\]"), (1 / 255, np.float32, None),
     (1.0, np.int64, "uint8")],
)  # fmt: skip
def test_float_or_int_images_outside_the_unit_range_are_refused(scale, dtype, match):
    img = (np.arange(16 * 16 * 3).reshape(16, 16, 3) % 256).astype(np.float64)
    x = (img * scale).astype(dtype)
    if match is None:  # floats in [0, 1] are the uint8 image / 255
        ref = pixel_features(img.astype(np.uint8))
        np.testing.assert_allclose(pixel_features(x), ref, atol=1e-5)
    else:
        with pytest.raises(DataError, match=match):
            pixel_features(x)
