"""Region masking against direct references; the Mask of truth grid on SynthDerm."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from conceptlens.exceptions import ConfigError, DataError, UnknownNameError
from conceptlens.studies import bounding_boxes, dilate, mask_images, masking_study
from tests.studies._encoder import pooled_features
from tests.studies._synth import synthderm_batch, synthderm_config


@pytest.fixture
def blobs(rng):
    img = rng.integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    roi = np.zeros((3, 20, 24), bool)
    roi[0, 5:9, 6:15] = True
    roi[1, 2, 3] = roi[1, 10:12, 20:23] = True  # two parts: the box spans both
    return img, roi  # image 2 has no ROI


def test_dilation_and_erosion_match_scipy(blobs):
    _, roi = blobs
    square = np.ones((3, 3), bool)
    for k in (1, 3):
        ref = np.stack([ndimage.binary_dilation(m, square, iterations=k) for m in roi])
        np.testing.assert_array_equal(dilate(roi, k), ref)
    big = dilate(roi, 3)
    ref = np.stack([ndimage.binary_erosion(m, square, iterations=2, border_value=1) for m in big])
    np.testing.assert_array_equal(dilate(big, -2), ref)


def test_conditions_black_fill(blobs):
    img, roi = blobs
    box = bounding_boxes(roi)
    assert box[1, 2:12, 3:23].all() and box[1].sum() == 10 * 20 and not box[2].any()
    for cond, region in [("no_roi", roi), ("no_roi_bb", box), ("only_roi", ~roi),
                         ("only_roi_bb", ~box)]:  # fmt: skip
        out = mask_images(img, roi, cond)
        assert (out[region] == 0).all(), cond
        np.testing.assert_array_equal(out[~region], img[~region])
    np.testing.assert_array_equal(mask_images(img, roi, "full"), img)


def test_mean_blur_and_inpaint_fills():
    ramp = np.linspace(0, 240, 32)
    img = np.repeat(np.stack([np.broadcast_to(ramp, (32, 32))] * 3, -1)[None], 2, 0)
    img = np.rint(img).astype(np.uint8)
    roi = np.zeros((2, 32, 32), bool)
    roi[:, 10:22, 8:20] = True
    mean = mask_images(img, roi, "no_roi", fill="mean")
    ref = np.broadcast_to(np.rint(img[0][~roi[0]].mean(0)), (roi[0].sum(), 3))
    np.testing.assert_allclose(mean[0][roi[0]], ref, atol=0.5)
    # a linear ramp is harmonic: diffusion inpainting recovers it from the border
    inp = mask_images(img, roi, "no_roi", fill="inpaint")
    err = np.abs(inp[roi].astype(float) - img[roi].astype(float)).max()
    assert err < 6, err
    blur = mask_images(img, roi, "no_roi", fill="blur", blur_size=5)
    ref = ndimage.uniform_filter(img[0, :, :, 0].astype(float), 5, mode="nearest")
    np.testing.assert_allclose(blur[0, :, :, 0][roi[0]], np.rint(ref[roi[0]]), atol=1)


def test_bad_inputs(blobs):
    img, roi = blobs
    with pytest.raises(ConfigError, match="conditions are"):
        mask_images(img, roi, "no_lungs")
    with pytest.raises(ConfigError, match="fills are"):
        mask_images(img, roi, "no_roi", fill="noise")
    with pytest.raises(DataError, match="one mask"):
        mask_images(img, roi[:, :10], "no_roi")
    ds = synthderm_batch(synthderm_config("iid"), 20, image_size=32).to_dataset()
    with pytest.raises(UnknownNameError, match="lesion_mask"):
        masking_study(ds, roi="roi_mask", encoder=pooled_features)
    with pytest.raises(UnknownNameError, match="available columns"):
        masking_study(ds, roi="lesion_mask", encoder=pooled_features, metadata_columns=["age"])


def _grid(preset):
    ds = synthderm_batch(synthderm_config(preset), 600, seed=0, image_size=48).to_dataset()
    return masking_study(
        ds, roi="lesion_mask", encoder=pooled_features, models=["concept_head"],
        n_boot=200, metadata_columns=["site", "skin_tone"],
    )  # fmt: skip


def test_lesion_removed_model_above_chance_on_confounded_and_shrinks_on_iid():
    conf, iid = _grid("confounded"), _grid("iid")
    sel = {"model": "concept_head", "dilation": 0, "class": "melanoma"}
    for g in (conf, iid):
        assert g.auroc.sizes == {"model": 1, "dilation": 1, "train_condition": 5,
                                 "eval_condition": 5, "class": 3, "stat": 3}  # fmt: skip
        assert g.roi_fraction.sel(condition="full") == 0
    a_conf = conf.auroc.sel({**sel, "train_condition": "no_roi", "eval_condition": "no_roi"})
    a_iid = iid.auroc.sel({**sel, "train_condition": "no_roi", "eval_condition": "no_roi"})
    # the ink/ruler shortcut outside the lesion: well above chance without the lesion...
    assert float(a_conf.sel(stat="ci_low")) > 0.7
    # ...and less so where the artifacts carry no class information
    assert float(a_conf.sel(stat="estimate")) - float(a_iid.sel(stat="estimate")) > 0.05
    # the metadata-only baseline (site, skin tone) knows nothing about the class here
    assert abs(float(conf.metadata_macro_auroc.sel(stat="estimate")) - 0.5) < 0.1


def test_masking_study_on_a_manifest(tmp_path):
    """Any manifest with an ROI mask column: PNGs and masks read back from disk."""
    import conceptlens as cl

    folder = cl.write_synthderm(tmp_path / "sd", 80, seed=3, preset="confounded", image_size=32)
    ds = cl.load_manifest(folder)
    assert "lesion_mask" in ds.mask_names
    grid = masking_study(
        ds, roi="lesion_mask", encoder=pooled_features, models=["linear_probe"],
        conditions=["full", "no_roi"], dilations=[0, -1], n_boot=20,
    )  # fmt: skip
    assert grid.macro_auroc.sizes == {"model": 1, "dilation": 2, "train_condition": 2,
                                      "eval_condition": 2, "stat": 3}  # fmt: skip
    frac = grid.roi_fraction.sel(condition="no_roi")
    assert 0 < float(frac.sel(dilation=-1)) < float(frac.sel(dilation=0))


def test_train_and_test_as_masks_or_one_half_are_honoured():
    ds = synthderm_batch(synthderm_config("confounded"), 90, seed=1, image_size=32).to_dataset()
    kw = dict(roi="lesion_mask", encoder=pooled_features, models=["linear_probe"],
              conditions=["full", "no_roi"], n_boot=0)  # fmt: skip
    rng = np.random.default_rng(0)
    train = np.sort(rng.choice(90, 60, replace=False))
    test = np.setdiff1d(np.arange(90), train)
    ref = masking_study(ds, train=train, test=test, **kw)
    assert (ref.attrs["n_train"], ref.attrs["n_test"]) == (60, 30)
    mask = np.isin(np.arange(90), train)
    # a boolean mask (was sorted as positions) and train alone (test was replaced by the
    # default split) give the same grid as the explicit positions
    for args in ({"train": mask, "test": ~mask}, {"train": train}, {"test": test}):
        out = masking_study(ds, **args, **kw)
        np.testing.assert_allclose(out.auroc.values, ref.auroc.values)
    with pytest.raises(DataError, match=r"train and test share 1 image\(s\)"):
        masking_study(ds, train=train, test=np.append(test, train[0]), **kw)
    with pytest.raises(DataError, match=r"test: positions outside 0..89"):
        masking_study(ds, train=train, test=[90], **kw)
    with pytest.raises(DataError, match="train: boolean mask of shape"):
        masking_study(ds, train=mask[:10], **kw)
