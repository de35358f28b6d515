import numpy as np
import pytest

from conceptlens._numeric import trapezoid


def test_trapezoid_matches_numpy_on_uneven_grids():
    rng = np.random.default_rng(0)
    x = np.sort(rng.random(17))
    y = rng.normal(size=17)
    ref = np.trapezoid(y, x) if hasattr(np, "trapezoid") else np.trapz(y, x)  # noqa: NPY201
    assert trapezoid(y, x) == pytest.approx(float(ref), rel=1e-12)
    # an independent check: the area under a straight line is exact
    assert trapezoid(2 * x + 1, x) == pytest.approx((x[-1] ** 2 + x[-1]) - (x[0] ** 2 + x[0]))


def test_trapezoid_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one length"):
        trapezoid(np.zeros(3), np.zeros(4))
