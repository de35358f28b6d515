"""Messages built by conceptlens.exceptions."""

from __future__ import annotations

import numpy as np

from conceptlens.exceptions import unknown_names


def test_unknown_names_pluralises_and_shows_plain_names():
    msg = unknown_names("class", ["Melanoma"], np.array(["melanoma", "nevus"]))
    assert msg == (
        "unknown class 'Melanoma' (did you mean 'melanoma'?); the classes are 'melanoma', 'nevus'."
    )  # was "the classs are"
    msg = unknown_names("concept group", ["a", "b"], ["artifact"])
    assert msg.startswith("unknown concept groups 'a', 'b';")
    assert msg.endswith("the concept groups are 'artifact'.")


def test_standardiser_names_missing_concepts_plainly():
    import pytest
    import xarray as xr

    from conceptlens.concepts import ConceptStandardizer
    from conceptlens.exceptions import DataError

    s = xr.DataArray(
        np.random.default_rng(0).normal(size=(6, 3)),
        dims=("sample", "concept"),
        coords={"concept": np.array(["a", "b", "c"])},
    )
    std = ConceptStandardizer().fit(s)
    with pytest.raises(DataError, match=r"lack 2 concept\(s\) .*: \['b', 'c'\];"):
        std.transform(s.isel(concept=[0]))
