"""Save/load round trips (safetensors + JSON, no pickle)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conceptlens.exceptions import MissingFileError
from conceptlens.heads import (
    ConceptBottleneckClassifier,
    SparseLinearHead,
    SparseLinearHeadCV,
    load_head,
    save_head,
)
from tests.heads.test_estimators import _scores


@pytest.mark.parametrize(
    "model",
    [SparseLinearHead(C=0.3), SparseLinearHeadCV(Cs=5), ConceptBottleneckClassifier(Cs=5)],
)
@pytest.mark.parametrize("k", [2, 3])
def test_round_trip(model, k, tmp_path, global_random_seed):
    scores, y = _scores(global_random_seed, k=k)
    X = scores if isinstance(model, ConceptBottleneckClassifier) else scores.values
    model.fit(X, y)
    out = save_head(model, tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == ["head.json", "head.safetensors"]
    meta = json.loads((out / "head.json").read_text())
    assert meta["kind"] == type(model).__name__
    loaded = load_head(out)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
    if isinstance(model, ConceptBottleneckClassifier):
        assert loaded.coef_.identical(model.coef_)


def test_missing_folder(tmp_path):
    with pytest.raises(MissingFileError, match="save_head"):
        load_head(tmp_path / "nope")
