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
    random_words_bank,
    score_lift,
    select_concepts,
)
from conceptlens.concepts._baseline import RANDOM_WORDS
from conceptlens.exceptions import BankError, ConfigError, DataError, FilterWarning


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
    with pytest.warns(FilterWarning, match="removed 6 of 8 concepts"):
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


def random_scores(bank, n_samples, rng, n_random=40, scale=0.05):
    rnd = random_words_bank(bank, n_random, seed=1)
    coords = {"sample": [f"s{i}" for i in range(n_samples)], "concept": list(rnd.names)}
    values = 0.2 + scale * rng.normal(size=(n_samples, n_random))
    return xr.DataArray(values, dims=("sample", "concept"), coords=coords)


def test_calibrated_filter_matches_numpy(rng):
    n = 60
    values = 0.2 + 0.05 * rng.normal(size=(n, len(BANK)))
    values[:8, 0] += 0.4  # "veil" fires strongly on a few images
    values[:, 1] += 0.3  # "veils" has a high offset but fires on no image in particular
    da = scores_for(BANK, values)
    base = random_scores(BANK, n, rng)
    with pytest.warns(FilterWarning, match="lower quantile= or margin="):
        kept, rep = filter_unscorable(BANK, da, baseline=base, quantile=0.9, top_k=5)

    def lift(x):
        return np.sort(x, axis=0)[-5:].mean(axis=0) - np.median(x, axis=0)

    thr = np.quantile(lift(base.values), 0.9)
    expect = {nm for nm, v in zip(BANK.names, lift(values), strict=True) if v <= thr}
    assert set(rep.removed) == expect
    assert "veil" in kept.names and "veils" in rep.removed  # offset alone is not enough
    np.testing.assert_allclose(score_lift(values), lift(values))
    # a margin raises the bar
    with pytest.warns(FilterWarning):
        _, rep_m = filter_unscorable(BANK, da, baseline=base, margin=0.1)
    assert set(rep_m.removed) == {
        nm for nm, v in zip(BANK.names, lift(values), strict=True) if v <= thr + 0.1
    }
    with pytest.raises(BankError, match="lower quantile= or margin="):
        filter_unscorable(BANK, da, baseline=base, margin=1.0)
    # an absolute cutoff judges by offset: it keeps "veils", which fires nowhere
    with pytest.warns(FilterWarning, match="calibrate with baseline="):
        kept_abs, _ = filter_unscorable(BANK, da, cutoff=0.45)
    assert set(kept_abs.names) == {"veil", "veils"}


def test_calibrated_filter_checks_its_baseline(rng):
    da = scores_for(BANK, rng.normal(size=(20, len(BANK))))
    base = random_scores(BANK, 20, rng)
    with pytest.raises(ConfigError, match="not both or neither"):
        filter_unscorable(BANK, da)
    with pytest.raises(ConfigError, match="not both or neither"):
        filter_unscorable(BANK, da, baseline=base, cutoff=0.1)
    with pytest.raises(DataError, match="same images"):
        filter_unscorable(BANK, da, baseline=random_scores(BANK, 19, rng))
    with pytest.raises(DataError, match="at least 10"):
        filter_unscorable(BANK, da, baseline=base.isel(concept=slice(0, 5)))
    other = base.assign_attrs(backbone="other")
    with pytest.raises(DataError, match="same backbone"):
        filter_unscorable(BANK, da.assign_attrs(backbone="synthderm-lit"), baseline=other)
    with pytest.raises(ConfigError, match="quantile"):
        filter_unscorable(BANK, da, baseline=base, quantile=1.5)


def test_filter_bank_warns_when_filters_together_remove_most(rng):
    values = 0.2 + 0.05 * rng.normal(size=(30, len(BANK)))
    da = scores_for(BANK, values)
    # length removes 1, class names 2, cutoff 2 of the 5 left: each at most half of what
    # it was given, together 5 of 8
    left = [i for i, nm in enumerate(BANK.names) if nm not in ("long", "mel_pattern", "nevi")]
    top = np.sort(values[:, left], axis=0)[-5:].mean(axis=0)
    cut = float(np.sort(top)[2]) - 1e-9
    with pytest.warns(FilterWarning, match="together removed 5 of 8"):
        kept, _ = filter_bank(BANK, max_words=6, class_ratio=0.6, concept_score=da, cutoff=cut)
    assert len(kept) < len(BANK) / 2


def test_random_words_bank():
    derm = load_bank("dermoscopy")
    a, b = random_words_bank(derm, 64, seed=3), random_words_bank(derm, 64, seed=3)
    assert a.to_dict() == b.to_dict() and len(a) == 64
    assert a.templates == derm.templates and a.reference_prompts == derm.reference_prompts
    assert a.classes == derm.classes and set(a.groups) == {"random"}
    words = {w for c in a.concepts for w in c.prompts[0].split()}
    assert words <= set(RANDOM_WORDS)
    # nothing a dermoscopy concept says is drawn
    derm_words = {w for c in derm.concepts for p in c.prompts for w in p.lower().split()}
    assert not set(RANDOM_WORDS) & derm_words
    assert random_words_bank(derm, 5, seed=4).to_dict() != random_words_bank(derm, 5).to_dict()


def test_cli_random_words_and_calibrated_filter(tmp_path, rng):
    bank = load_bank("dermoscopy")
    res = CliRunner().invoke(
        main, ["bank", "random-words", "dermoscopy", "--out", str(tmp_path / "r.yaml")]
    )
    assert res.exit_code == 0, res.output
    rnd = load_bank(tmp_path / "r.yaml")
    assert len(rnd) == 64
    n = 50
    # a majority of concepts fire on some images; the others are flatter than random words
    values = 0.2 + 0.01 * rng.normal(size=(n, len(bank)))
    values[:6, : len(bank) // 2 + 3] += 0.5
    scores_for(bank, values).to_netcdf(tmp_path / "s.nc")
    base = 0.2 + 0.05 * rng.normal(size=(n, len(rnd)))
    xr.DataArray(
        base,
        dims=("sample", "concept"),
        coords={"sample": [f"s{i}" for i in range(n)], "concept": list(rnd.names)},
        name="concept_score",
    ).to_netcdf(tmp_path / "b.nc")
    args = ["bank", "filter", "dermoscopy", "--out", str(tmp_path / "f.yaml")]
    res = CliRunner().invoke(
        main, [*args, "--scores", str(tmp_path / "s.nc"), "--baseline", str(tmp_path / "b.nc")]
    )
    assert res.exit_code == 0, res.output
    kept = load_bank(tmp_path / "f.yaml")
    assert set(kept.names) == set(bank.names[: len(bank) // 2 + 3])
    assert "random words: q0.9 of 64" in res.output
    res = CliRunner().invoke(main, [*args, "--scores", str(tmp_path / "s.nc")])
    assert res.exit_code == 0 and "scorability not checked" in res.output


@pytest.mark.slow
def test_calibrated_filter_keeps_synthderm_lit_banks(tmp_path):
    """On synthderm-lit, LF-CBM's 0.25 empties the dermoscopy bank; the calibration keeps
    every concept SynthDerm draws and drops ones it never draws."""
    import conceptlens as cl
    from conceptlens.backbones import load_backbone
    from conceptlens.concepts import score_concepts

    ds = cl.SynthDerm().generate(120, seed=0).to_dataset()
    bb = load_backbone("synthderm-lit")
    for name in ("dermoscopy", "synthderm"):
        bank = load_bank(name)
        kw = {"cache": tmp_path / "cache", "show_progress": False}
        s = score_concepts(bb, ds, bank, **kw)
        r = score_concepts(bb, ds, random_words_bank(bank), **kw)
        kept, rep = filter_unscorable(bank, s, baseline=r)
        if name == "synthderm":  # every concept is drawn in the images
            assert len(kept) == len(bank)
        else:
            assert 2 * len(kept) >= len(bank)
            assert {"leaf_like_areas", "spoke_wheel_areas"} <= set(rep.removed)
            # Label-free CBM's cutoff removes every concept on these 120 images
            with pytest.raises(BankError, match="calibrate with baseline="):
                filter_unscorable(bank, s, cutoff=0.25)
