"""Seeded splits: stratified, grouped by patient, held-out site; save and reload."""

from __future__ import annotations

import json
import re

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
    fractions = {"a": frac, "b": 1 - frac}
    try:
        parts = make_splits(meta, strategy="group", fractions=fractions, seed=seed)
    except DataError as exc:  # too few patients (or strata) to give both splits one
        (name,) = re.findall(r"split\(s\) \['(\w)'\] would be empty", str(exc))
        assert name in fractions
        return
    assert parts["a"] and parts["b"]
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
    gaps["label"] = gaps["label"].astype(object)
    gaps.loc["s0003", "label"] = None
    with pytest.raises(DataError, match=r"1 empty values.*fillna"):
        make_splits(gaps, strategy="stratified")


def test_empty_group_cells_are_groups_of_their_own(rng):
    meta = _meta(rng, 60)
    meta["patient_id"] = meta["patient_id"].astype(object)
    meta.loc[meta.index[:20], "patient_id"] = None
    parts = make_splits(meta, strategy="group", seed=0)
    _check_partition(parts, meta)
    patients = {k: set(meta.loc[v, "patient_id"].dropna()) for k, v in parts.items()}
    for a in parts:
        for b in parts:
            if a < b:
                assert not patients[a] & patients[b]
    # the 20 unknown-patient images are spread, not lumped into one split
    spread = {k for k, v in parts.items() if set(v) & set(meta.index[:20])}
    assert len(spread) > 1


def test_grouped_split_that_would_be_empty_raises_naming_it():
    meta = pd.DataFrame(
        {"patient_id": ["p1", "p1", "p2", "p2"], "label": ["a", "b", "a", "b"]},
        index=["s1", "s2", "s3", "s4"],
    )
    with pytest.raises(DataError, match=r"\['val', 'test'\] would be empty.*2 distinct"):
        make_splits(meta, strategy="group")  # 3 splits, 2 patients
    parts = make_splits(meta, strategy="group", fractions={"train": 0.5, "test": 0.5})
    assert sorted(map(len, parts.values())) == [2, 2]
    with pytest.raises(DataError, match=r"\['val'\] would be empty"):
        make_splits(
            meta.assign(site=["x", "x", "y", "y"]),  # one patient left at site x
            strategy="site",
            heldout_sites="y",
            fractions={"train": 0.85, "val": 0.15},
        )


def test_default_strategy_groups_by_patient_when_the_data_has_them(rng):
    meta = _meta(rng)
    default = make_splits(meta, seed=3)
    assert default == make_splits(meta, strategy="group", seed=3)
    split_of = {i: name for name, ids in default.items() for i in ids}
    owners = meta.assign(split=[split_of[i] for i in meta.index])
    assert owners.groupby("patient_id")["split"].nunique().max() == 1
    plain = meta.drop(columns="patient_id")
    assert make_splits(plain, seed=3) == make_splits(plain, strategy="stratified", seed=3)


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


def test_grouped_dominant_stratum_breaks_ties_to_the_sorted_first_value():
    from conceptlens.data._splits import _grouped

    # g1 has one "nevus" and one "bcc" image: a tie, so its dominant class is "bcc" (sorts
    # first) and it is dealt alone in the "bcc" bucket, first: to split "a" (equal
    # deficits, then equal overall, then the first split). g2 (3 x nevus) is dealt in the
    # "nevus" bucket: equal deficits there, and "b" is further behind overall -> "b".
    # Were g1 dealt as "nevus", the larger g2 would go first to "a" and g1 to "b".
    groups = np.array(["g1", "g1", "g2", "g2", "g2"])
    strata = np.array(["nevus", "bcc", "nevus", "nevus", "nevus"])
    for seed in range(5):
        got = _grouped(groups, strata, {"a": 0.5, "b": 0.5}, np.random.default_rng(seed))
        assert got == {"a": [0, 1], "b": [2, 3, 4]}


@pytest.mark.parametrize("seed", range(5))
def test_grouped_fills_each_class_bucket_within_one_group_of_target(seed):
    from conceptlens.data._splits import _grouped

    rng = np.random.default_rng(seed)
    n = 300
    groups = np.array([f"p{v}" for v in rng.integers(0, 80, size=n)])
    strata = rng.choice(["sk", "nevus", "melanoma", "bcc"], size=n)
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    got = _grouped(groups, strata, fractions, np.random.default_rng(seed + 100))
    split_of = np.empty(n, dtype=object)
    for name, rows in got.items():
        split_of[rows] = name
    frame = pd.DataFrame({"group": groups, "stratum": strata, "split": split_of})
    # dominant class per group, computed independently: most frequent, ties -> sorted first
    counts = frame.groupby(["group", "stratum"]).size().rename("n").reset_index()
    counts = counts.sort_values(["group", "n", "stratum"], ascending=[True, False, True])
    dominant = counts.drop_duplicates("group").set_index("group")["stratum"]
    per_group = frame.groupby("group").agg(size=("split", "size"), split=("split", "first"))
    assert (frame.groupby("group")["split"].nunique() == 1).all()  # never shared
    per_group["dominant"] = dominant
    for _, bucket in per_group.groupby("dominant"):
        total, biggest = bucket["size"].sum(), bucket["size"].max()
        for name, frac in fractions.items():
            filled = bucket.loc[bucket["split"] == name, "size"].sum()
            # greedy "most behind first": never more than one group over its share, and
            # never more than one group per other split under it
            assert filled <= frac * total + biggest
            assert filled >= frac * total - (len(fractions) - 1) * biggest


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
