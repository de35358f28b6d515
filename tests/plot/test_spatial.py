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
    with pytest.raises(DataError, match="unknown concept 'veil'"):
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


def test_careless_inputs_get_clear_errors_or_are_drawn_right():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(DataError, match=r"float image must lie in \[0, 1\].*divide"):
        plot_concept_maps(img.astype(float) + 200, _maps())  # was drawn clipped to white
    with pytest.raises(DataError, match="sample 5 is out of range for maps of 2"):
        plot_concept_maps(img, _maps(), sample=5)
    for bad in (True, 1.7):
        with pytest.raises(ConfigError, match="sample must be a position"):
            plot_concept_maps(img, _maps(), sample=bad)
    with pytest.raises(DataError, match="did you mean 'ruler'"):
        plot_concept_maps(img, _maps(), concepts=["rular"])
    with pytest.raises(ConfigError, match="concepts is empty"):
        plot_concept_maps(img, _maps(), concepts=[])
    with pytest.raises(ConfigError, match="alpha must be in"):
        plot_concept_maps(img, _maps(), alpha=3)
    with pytest.raises(DataError, match="expand_dims"):
        plot_concept_maps(img, _maps().isel(concept=0))
    # one bare concept name is one concept; a grey image is drawn as grey RGB
    axes = plot_concept_maps(img[..., 0] + 9, _maps(), concepts="hair")
    assert [a.get_title() for a in axes] == ["image", "hair"]
    np.testing.assert_array_equal(axes[0].get_images()[0].get_array(), img + 9)
