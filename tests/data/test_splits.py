"""Seeded splits: stratified, grouped by patient, held-out site; save and reload."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conceptlens.data import ImageDataset, load_splits, make_splits, save_splits
from conceptlens.exceptions import ConfigError, DataError


def _meta(rng: np.random.Generator, n: int = 200) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": rng.choice(["nevus", "melanoma", "sk"], size=n, p=[0.6, 0.3, 0.1]),
            "patient_id": [f"p{v}" for v in rng.integers(0, n // 3, size=n)],
            "site": rng.choice(["site_a", "site_b", "site_c"], size=n),
        },
        index=[f"s{i:04d}" for i in range(n)],
    )


def _check_partition(parts: dict[str, list[str]], meta: pd.DataFrame) -> None:
    all_ids = [i for v in parts.values() for i in v]
    assert sorted(all_ids) == sorted(meta.index) and len(set(all_ids)) == len(all_ids)
    order = {s: k for k, s in enumerate(meta.index)}
    for ids in parts.values():
        assert [order[i] for i in ids] == sorted(order[i] for i in ids)


def test_stratified_keeps_class_proportions(rng):
    meta = _meta(rng)
    parts = make_splits(meta, strategy="stratified", seed=1)
    _check_partition(parts, meta)
    for cls, count in meta["label"].value_counts().items():
        got = {k: int((meta.loc[v, "label"] == cls).sum()) for k, v in parts.items()}
        for name, frac in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
            assert abs(got[name] - frac * count) < 1.0, (cls, got)
    assert parts == make_splits(meta, strategy="stratified", seed=1)
    assert parts != make_splits(meta, strategy="stratified", seed=2)


def test_grouped_never_shares_a_patient(rng):
    meta = _meta(rng)
    parts = make_splits(meta, strategy="group", seed=0)
    _check_partition(parts, meta)
    owners: dict[str, set[str]] = {}
    for name, ids in parts.items():
        for p in meta.loc[ids, "patient_id"]:
            owners.setdefault(p, set()).add(name)
    assert all(len(v) == 1 for v in owners.values())
    sizes = {k: len(v) / len(meta) for k, v in parts.items()}
    assert abs(sizes["train"] - 0.7) < 0.06 and abs(sizes["test"] - 0.15) < 0.06


@settings(max_examples=40, deadline=None)
@given(
    groups=st.lists(st.integers(0, 12), min_size=1, max_size=60),
    seed=st.integers(0, 2**16),
    frac=st.floats(0.1, 0.9),
)
def test_grouped_split_property(groups, seed, frac):
    meta = pd.DataFrame(
        {"patient_id": [str(g) for g in groups], "label": [g % 2 for g in groups]},
        index=[f"i{k}" for k in range(len(groups))],
    )
    parts = make_splits(meta, strategy="group", fractions={"a": frac, "b": 1 - frac}, seed=seed)
    _check_partition(parts, meta)
    a_patients = set(meta.loc[parts["a"], "patient_id"])
    b_patients = set(meta.loc[parts["b"], "patient_id"])
    assert not a_patients & b_patients


def test_site_holdout(rng):
    meta = _meta(rng)
    parts = make_splits(meta, strategy="site", heldout_sites="site_c", seed=0)
    assert set(parts) == {"train", "val", "test"}
    _check_partition(parts, meta)
    assert set(meta.loc[parts["test"], "site"]) == {"site_c"}
    assert "site_c" not in set(meta.loc[parts["train"] + parts["val"], "site"])
    # grouped inside the remaining sites: train and val share no patient
    assert not set(meta.loc[parts["train"], "patient_id"]) & set(
        meta.loc[parts["val"], "patient_id"]
    )
    with pytest.raises(ConfigError, match=r"heldout_sites"):
        make_splits(meta, strategy="site")
    with pytest.raises(DataError, match=r"held-out sites \['site_z'\]"):
        make_splits(meta, strategy="site", heldout_sites=["site_z"])


def test_split_errors(rng):
    meta = _meta(rng, 30)
    with pytest.raises(ConfigError, match=r"sum to 1"):
        make_splits(meta, fractions={"train": 0.5, "test": 0.4})
    with pytest.raises(ConfigError, match=r"unknown split strategy"):
        make_splits(meta, strategy="kfold")
    with pytest.raises(DataError, match=r"group column 'subject' not found"):
        make_splits(meta, strategy="group", group_column="subject")
    gaps = meta.copy()
    gaps.loc["s0003", "patient_id"] = None
    with pytest.raises(DataError, match=r"1 empty values.*fillna"):
        make_splits(gaps, strategy="group")


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_save_and_reload(tmp_path, rng, suffix):
    meta = _meta(rng, 50)
    parts = make_splits(meta, strategy="group", seed=7)
    path = save_splits(parts, tmp_path / f"splits{suffix}", info={"strategy": "group", "seed": 7})
    assert load_splits(path) == parts
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left
    if suffix == ".json":
        doc = json.loads(path.read_text())
        assert doc["schema_version"] == 1 and doc["info"]["seed"] == 7
    ds = ImageDataset.from_arrays(np.zeros((50, 2, 2, 3), np.uint8), meta)
    subsets = ds.split(load_splits(path))
    assert {k: v.ids for k, v in subsets.items()} == parts


def test_overlapping_split_file_rejected(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"splits": {"a": ["x", "y"], "b": ["y"]}}))
    with pytest.raises(DataError, match=r"'y' is in both 'a' and 'b'"):
        load_splits(tmp_path / "s.json")
    (tmp_path / "t.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"not a conceptlens split file"):
        load_splits(tmp_path / "t.json")


def test_dataset_split_convenience(rng):
    meta = _meta(rng, 60)
    ds = ImageDataset.from_arrays(np.zeros((60, 2, 2, 3), np.uint8), meta)
    parts = ds.split("stratified", seed=0)
    assert sum(len(v) for v in parts.values()) == 60
    assert set(parts) == {"train", "val", "test"}
    with pytest.raises(DataError, match=r"splits \['b'\] are empty"):
        ds.subset([0, 1]).split("random", fractions={"a": 1.0, "b": 0.0})


def _grouped_reference(groups, strata, fractions, rng):
    """The former per-group loop for the dominant stratum, kept to pin the vectorised one."""
    uniq, inverse = np.unique(groups, return_inverse=True)
    sizes = np.bincount(inverse)
    dominant = np.empty(len(uniq), dtype=object)
    for g in range(len(uniq)):
        vals, counts = np.unique(strata[inverse == g], return_counts=True)
        dominant[g] = vals[np.argmax(counts)]
    buckets = [np.flatnonzero(dominant == s) for s in np.unique(dominant.astype(str))]
    names = list(fractions)
    target = np.array([fractions[k] for k in names])
    assigned = np.full(len(uniq), -1)
    filled_all = np.zeros(len(names))
    for bucket in buckets:
        order = bucket[rng.permutation(len(bucket))]
        order = order[np.argsort(-sizes[order], kind="stable")]
        filled = np.zeros(len(names))
        total = sizes[bucket].sum()
        for g in order:
            deficit = target * total - filled
            overall = target * len(groups) - filled_all
            j = int(np.lexsort((-overall, -deficit))[0])
            assigned[g] = j
            filled[j] += sizes[g]
            filled_all[j] += sizes[g]
    return {name: np.flatnonzero(assigned[inverse] == j).tolist() for j, name in enumerate(names)}


@pytest.mark.parametrize("seed", range(5))
def test_grouped_dominant_stratum_matches_per_group_loop_with_ties(seed):
    from conceptlens.data._splits import _grouped

    rng = np.random.default_rng(seed)
    n = 300
    groups = np.array([f"p{v}" for v in rng.integers(0, 80, size=n)])
    strata = rng.choice(["sk", "nevus", "melanoma", "bcc"], size=n)
    # groups of two with different strata: a guaranteed tie, broken by sorted order
    groups = np.concatenate([groups, ["tie_a", "tie_a", "tie_b", "tie_b"]])
    strata = np.concatenate([strata, ["nevus", "bcc", "sk", "melanoma"]])
    ties = 0
    for g in np.unique(groups):
        _, counts = np.unique(strata[groups == g], return_counts=True)
        ties += int((counts == counts.max()).sum() > 1)
    assert ties >= 2
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    got = _grouped(groups, strata, fractions, np.random.default_rng(seed + 100))
    want = _grouped_reference(groups, strata, fractions, np.random.default_rng(seed + 100))
    assert got == want


def test_stratified_split_is_sklearns_train_test_split():
    from sklearn.model_selection import train_test_split

    from conceptlens.data import stratified_split

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    idx = np.flatnonzero(rng.random(400) < 0.8)
    train, test = stratified_split(y, 0.3, seed=4, indices=idx)
    ref_train, ref_test = train_test_split(idx, test_size=0.3, stratify=y[idx], random_state=4)
    np.testing.assert_array_equal(train, np.sort(ref_train))
    np.testing.assert_array_equal(test, np.sort(ref_test))
    assert not set(train) & set(test) and set(train) | set(test) == set(idx)


def test_stratified_split_errors_name_the_problem():
    from conceptlens.data import stratified_split
    from conceptlens.exceptions import ConfigError, DataError

    with pytest.raises(ConfigError, match="test_fraction"):
        stratified_split([0, 1, 0, 1], 1.0)
    with pytest.raises(DataError, match=r"\['rare'\]"):
        stratified_split(["a", "a", "rare", "a"], 0.5)
