"""Filters (with reports) and per-class facility-location selection."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from conceptlens.cli import main
from conceptlens.concepts import (
    ConceptBank,
    facility_location_greedy,
    facility_location_value,
    filter_bank,
    filter_class_names,
    filter_duplicates,
    filter_length,
    filter_unscorable,
    lexical_embed,
    load_bank,
    select_concepts,
)
from conceptlens.exceptions import BankError, ConfigError, DataError


def make_bank(items, classes=("nevus", "melanoma")) -> ConceptBank:
    return ConceptBank.from_dict(
        {
            "schema_version": 1,
            "id": "t",
            "version": "1",
            "classes": list(classes),
            "concepts": [
                {
                    "name": n,
                    "prompts": [p],
                    "group": g,
                    "classes": c,
                    "provenance": {"kind": "curated"},
                }
                for n, p, g, c in items
            ],
        }
    )


BANK = make_bank(
    [
        ("veil", "blue-white veil", "colour", {"melanoma": 1}),
        ("veils", "blue-white veils", "colour", {"melanoma": 1}),
        ("streaks", "irregular streaks", "structure", {"melanoma": 1}),
        ("long", "a lesion with many colours and shapes that are hard to describe", "colour", {}),
        ("mel_pattern", "melanoma pattern", "structure", {"melanoma": 1}),
        ("nevi", "nevi", "structure", {"nevus": 1}),
        ("network", "regular pigment network", "structure", {"nevus": 1}),
        ("globules", "regular brown globules", "structure", {"nevus": 1}),
    ]
)


def scores_for(bank, values, labels=None):
    coords = {"sample": [f"s{i}" for i in range(values.shape[0])], "concept": list(bank.names)}
    da = xr.DataArray(values, dims=("sample", "concept"), coords=coords, name="concept_score")
    if labels is not None:
        da = da.assign_coords(label=("sample", np.asarray(labels)))
    return da


def test_filter_length():
    kept, rep = filter_length(BANK, max_words=6)
    assert "long" not in kept.names and rep.removed == ["long"]
    assert rep.records[0]["reason"] == "12 words > 6"
    _, rep2 = filter_length(BANK, max_words=50, max_chars=15)
    assert set(rep2.removed) == {"long", "veils", "streaks", "mel_pattern", "network", "globules"}


def test_filter_class_names():
    kept, rep = filter_class_names(BANK, max_ratio=0.6)
    df = rep.to_frame()
    assert list(df.columns) == ["concept", "filter", "reason", "value"]
    assert set(rep.removed) == {"mel_pattern", "nevi"}
    assert set(kept.names) == set(BANK.names) - {"mel_pattern", "nevi"}
    assert "contains class name 'melanoma'" in df.set_index("concept").loc["mel_pattern", "reason"]
    assert "similar to class 'nevus'" in df.set_index("concept").loc["nevi", "reason"]
    # embedding cosine: a lexical embedding puts "nevi" near "nevus"
    _, rep_e = filter_class_names(BANK, max_ratio=1.01, embed=lexical_embed, max_cosine=0.3)
    by_name = {r["concept"]: r["reason"] for r in rep_e.records}
    assert "embedding cosine" in by_name["nevi"] and "'nevus'" in by_name["nevi"]
    assert "veil" not in by_name


def test_filter_duplicates_keeps_first_or_priority():
    kept, rep = filter_duplicates(BANK, max_cosine=0.8)
    assert "veil" in kept.names and "veils" not in kept.names
    assert rep.records[0]["concept"] == "veils" and "'veil'" in rep.records[0]["reason"]
    # the value is the cosine, recomputed here independently
    e = lexical_embed(["blue-white veil", "blue-white veils"])
    assert rep.records[0]["value"] == pytest.approx(float(e[0] @ e[1]))
    prio = [0.0, 1.0] + [0.0] * (len(BANK) - 2)
    kept2, _ = filter_duplicates(BANK, max_cosine=0.8, priority=prio)
    assert "veils" in kept2.names and "veil" not in kept2.names
    assert kept2.names == tuple(n for n in BANK.names if n in kept2.names)  # bank order kept


def test_filter_unscorable_matches_numpy(rng):
    values = rng.normal(size=(40, len(BANK)))
    values[:, 2] -= 3.0  # "streaks" never fires
    da = scores_for(BANK, values)
    kept, rep = filter_unscorable(BANK, da, cutoff=0.5, top_k=5)
    top = np.sort(values, axis=0)[-5:].mean(axis=0)
    assert set(rep.removed) == {n for n, v in zip(BANK.names, top, strict=True) if v < 0.5}
    assert set(kept.names) == set(BANK.names) - set(rep.removed)
    assert "streaks" in rep.removed
    for r in rep.records:
        assert r["value"] == pytest.approx(top[BANK.names.index(r["concept"])])
    with pytest.raises(DataError, match="no scores for"):
        filter_unscorable(BANK, da.isel(concept=slice(0, 3)), cutoff=0.0)


def test_filter_bank_composes_and_reports(rng):
    da = scores_for(BANK, rng.normal(size=(10, len(BANK))) + 5)
    kept, rep = filter_bank(
        BANK, max_words=6, class_ratio=0.6, duplicate_cosine=0.8, concept_score=da, cutoff=0.0
    )
    assert set(rep.removed) == {"long", "mel_pattern", "nevi", "veils"}
    assert [r["filter"] for r in rep.records] == [
        "length",
        "class_name",
        "class_name",
        "duplicate",
    ]
    assert len(kept) + len(rep) == len(BANK)
    assert rep.summary() == "length: 1 removed, class_name: 2 removed, duplicate: 1 removed"
    with pytest.raises(ConfigError, match="concept_score"):
        filter_bank(BANK, cutoff=0.1)
    with pytest.raises(BankError, match="removed every concept"):
        filter_length(BANK, max_words=0)


def brute_force(sim, k, gains, weight):
    best = -1.0
    for s in itertools.combinations(range(sim.shape[0]), k):
        best = max(best, facility_location_value(sim, s, gains, weight))
    return best


def test_facility_location_value_matches_loops(rng):
    sim = rng.normal(size=(6, 6))
    gains = rng.random(6)
    s = [1, 4]
    expected = sum(max(max(sim[i, j], 0) for j in s) for i in range(6)) + 0.5 * sum(gains[s])
    assert facility_location_value(sim, s, gains, 0.5) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(15))
def test_greedy_within_1_minus_1_over_e_of_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, k = 8, int(rng.integers(1, 5))
    x = rng.normal(size=(n, 4))
    sim = x @ x.T
    gains = rng.random(n) * (seed % 3)
    picks = facility_location_greedy(sim, k, gains=gains, weight=0.7)
    assert len(set(picks)) == k
    got = facility_location_value(sim, picks, gains, 0.7)
    opt = brute_force(sim, k, gains, 0.7)
    assert got <= opt + 1e-9
    assert got >= (1 - 1 / math.e) * opt - 1e-9
    if k == 1:  # greedy is exact for one pick
        assert got == pytest.approx(opt)
    # diminishing returns along the greedy sequence (submodularity)
    vals = [facility_location_value(sim, picks[:i], gains, 0.7) for i in range(k + 1)]
    gains_seq = np.diff(vals)
    assert np.all(gains_seq[1:] <= gains_seq[:-1] + 1e-9)


def test_greedy_known_answer_and_validation():
    sim = np.array([[1, 0.9, 0], [0.9, 1, 0], [0, 0, 1]])
    assert facility_location_greedy(sim, 2) == [0, 2]
    # a big discriminability bonus on item 1 changes the first pick
    assert facility_location_greedy(sim, 1, gains=np.array([0, 1.0, 0]), weight=5) == [1]
    with pytest.raises(ConfigError, match="non-negative"):
        facility_location_greedy(sim, 1, gains=np.array([-1.0, 0, 0]))
    with pytest.raises(ConfigError, match="square"):
        facility_location_greedy(np.ones((2, 3)), 1)


def test_select_concepts_per_class_with_discriminability(rng):
    bank, _ = filter_bank(BANK, max_words=6, class_ratio=0.6)
    labels = np.array(["nevus"] * 30 + ["melanoma"] * 30)
    values = rng.normal(size=(60, len(bank)))
    j = bank.names.index("streaks")
    values[30:, j] += 3.0  # streaks fire on melanoma only
    da = scores_for(bank, values, labels)
    kept, table = select_concepts(bank, 1, concept_score=da, weight=10.0)
    mel = table[table["class"] == "melanoma"]
    assert list(mel["concept"]) == ["streaks"]
    assert mel["discriminability"].iloc[0] == pytest.approx(3.0)  # best scaled to n candidates
    assert set(table["class"]) == {"nevus", "melanoma"}
    nev = table[table["class"] == "nevus"]
    assert nev["concept"].iloc[0] in {"network", "globules"}
    assert set(kept.names) == set(table["concept"])
    # without scores: pure coverage, k >= candidates selects them all
    kept_all, t2 = select_concepts(bank, 10)
    assert set(kept_all.names) == set(bank.names) and (t2["discriminability"] == 0).all()
    # scores of a different bank: the same clear error as filter_unscorable
    with pytest.raises(DataError, match="no scores for"):
        select_concepts(bank, 1, concept_score=da.isel(concept=slice(0, 2)))
    with pytest.raises(DataError, match="dims"):
        select_concepts(bank, 1, concept_score=values, labels=labels)


def test_discriminability_matches_numpy(rng):
    bank = make_bank(
        [
            ("a", "alpha dots", "structure", {}),
            ("b", "beta lines", "structure", {}),
            ("c", "gamma veil", "colour", {}),
        ],
        classes=("x", "y"),
    )
    values = rng.normal(size=(20, 3))
    values[:10, 1] += 1.5  # "b" is higher in class x
    labels = np.array([0] * 10 + [1] * 10)
    _, table = select_concepts(bank, 3, concept_score=scores_for(bank, values), labels=labels)
    inside, outside = values[:10], values[10:]
    d = (inside.mean(0) - outside.mean(0)) / (np.sqrt((inside.var(0) + outside.var(0)) / 2))
    d = np.clip(d, 0, None)
    d = d / d.max() * 3
    got = table[table["class"] == "x"].set_index("concept")["discriminability"]
    for name, v in zip(bank.names, d, strict=True):
        assert got[name] == pytest.approx(v, rel=1e-6)


def test_cli_filter_and_select(tmp_path, rng):
    bank = load_bank("dermoscopy")
    da = scores_for(
        bank, rng.normal(size=(12, len(bank))), labels=rng.choice(list(bank.classes), size=12)
    )
    da.to_netcdf(tmp_path / "s.nc")
    out, rep = tmp_path / "f.yaml", tmp_path / "rep.csv"
    res = CliRunner().invoke(
        main,
        [
            "bank",
            "filter",
            "dermoscopy",
            "--out",
            str(out),
            "--max-words",
            "6",
            "--duplicates",
            "0.7",
            "--scores",
            str(tmp_path / "s.nc"),
            "--cutoff",
            "-10",
            "--select",
            "3",
            "--report",
            str(rep),
        ],
    )
    assert res.exit_code == 0, res.output
    kept = load_bank(out)
    assert len(kept) <= 3 * len(bank.classes)
    assert rep.read_text().startswith("concept,filter,reason,value")
    assert "removed abrupt_border_cutoff" in res.output
