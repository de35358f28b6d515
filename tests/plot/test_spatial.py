from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from conceptlens.exceptions import ConfigError, DataError
from conceptlens.plot import plot_concept_maps


def _maps():
    v = np.zeros((2, 3, 4, 4))
    v[1, 2, 0, 3] = 1.0
    return xr.DataArray(
        v,
        dims=("sample", "concept", "y", "x"),
        coords={"sample": ["a", "b"], "concept": ["ruler", "ink", "hair"]},
    )


def test_draws_image_and_selected_maps_on_given_axes():
    fig, axes = plt.subplots(1, 3)
    img = np.full((16, 16, 3), 7, np.uint8)
    out = plot_concept_maps(img, _maps(), sample="b", concepts=["hair", "ruler"], axes=axes)
    assert [a.get_title() for a in out] == ["image", "hair", "ruler"]
    overlay = out[1].get_images()[1]
    np.testing.assert_array_equal(overlay.get_array(), _maps().values[1, 2])
    assert overlay.get_extent() == [0, 16, 16, 0]
    np.testing.assert_array_equal(out[0].get_images()[0].get_array(), img)
    plt.close(fig)


def test_errors():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(DataError, match="not in the maps"):
        plot_concept_maps(img, _maps(), concepts=["veil"])
    with pytest.raises(DataError, match="sample 'z'"):
        plot_concept_maps(img, _maps(), sample="z")
    _fig, axes = plt.subplots(1, 2)
    with pytest.raises(DataError, match="need 4 axes"):
        plot_concept_maps(img, _maps(), axes=axes)
    plt.close("all")


def test_new_figure_is_not_tracked_by_pyplot():
    """Like every conceptlens.plot function: no pyplot state (a notebook would otherwise
    show the figure twice, once from pyplot and once as the returned figure)."""
    before = plt.get_fignums()
    out = plot_concept_maps(np.zeros((16, 16, 3), np.uint8), _maps(), concepts=["ink"])
    assert [a.get_title() for a in out] == ["image", "ink"]
    assert out[0].figure is out[1].figure
    assert plt.get_fignums() == before


def test_guided_overlay_is_the_guided_upsample_of_the_map():
    from conceptlens.spatial import upsample

    img = np.zeros((16, 16, 3), np.uint8)
    img[:, 9:] = 220
    out = plot_concept_maps(img, _maps(), sample="b", concepts=["hair"], upsample="guided")
    overlay = np.asarray(out[1].get_images()[1].get_array())
    ref = upsample(_maps().isel(sample=1).sel(concept=["hair"]), 16, method="guided", image=img)
    assert overlay.shape == (16, 16)
    np.testing.assert_allclose(overlay, ref.values[0], atol=1e-6)
    with pytest.raises(ConfigError, match="upsample must be"):
        plot_concept_maps(img, _maps(), upsample="cubic")
    plt.close("all")
