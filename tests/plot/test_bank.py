"""bank_quality_bars: bars equal the report's values, colours follow the suggestions."""

import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import to_hex

from conceptlens.exceptions import DataError, UnknownNameError
from conceptlens.plot import bank_quality_bars
from conceptlens.plot._bank import SUGGESTION_COLOURS


def _report():
    return xr.Dataset(
        {
            "auroc": ("concept", [0.97, np.nan, 0.51]),
            "margin": ("concept", [0.12, 0.03, -0.02]),
            "text_nearest": ("concept", ["hair", "ruler", "ruler"]),
            "suggestion": ("concept", ["keep", "merge with ruler", "reject: undetectable"]),
        },
        coords={"concept": ["ruler", "ruler_marks", "vague"]},
        attrs={"bank_id": "toy"},
    )


def test_bars_equal_the_report_and_colour_by_suggestion():
    ax = bank_quality_bars(_report(), "margin")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ruler", "ruler_marks", "vague"]
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths, [0.12, 0.03, -0.02])
    colours = [to_hex(p.get_facecolor()) for p in ax.patches]
    assert colours == [SUGGESTION_COLOURS[k] for k in ("keep", "merge", "reject")]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["keep", "merge", "reject"]
    assert ax.get_title() == "bank quality: toy" and "random-words" in ax.get_xlabel()


def test_missing_auroc_draws_no_bar_and_says_so():
    ax = bank_quality_bars(_report())
    np.testing.assert_allclose([p.get_width() for p in ax.patches], [0.97, 0.51])
    assert any(t.get_text().strip() == "n/a" for t in ax.texts)


def test_bad_metric_names_the_choices():
    with pytest.raises(UnknownNameError, match=r"available: .*'auroc'"):
        bank_quality_bars(_report(), "nope")
    with pytest.raises(DataError, match="not numbers"):
        bank_quality_bars(_report(), "text_nearest")
