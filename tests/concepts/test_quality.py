"""The bank quality report, checked against independent computations."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from conceptlens.cli import main
from conceptlens.concepts import (
    ConceptBank,
    bank_quality,
    random_words_bank,
    score_concepts,
)
from conceptlens.concepts._quality import suggest
from conceptlens.exceptions import ConfigError, DataError
from tests.backbones._tiny import (
    VIT_AVG,
    dataset,
    images,
    tiny_backbone,
    tiny_bank,
    write_checkpoint,
)


@pytest.fixture(scope="module")
def bb(tmp_path_factory):
    return tiny_backbone(tmp_path_factory.mktemp("bb"), VIT_AVG, batch_size=8)


def leaky_bank():
    d = tiny_bank().to_dict()
    d["concepts"].append(
        {
            "name": "malignant_lesion",
            "prompts": ["a malignant lesion"],
            "group": "finding",
            "provenance": {"kind": "curated"},
        }
    )
    d["concepts"].append(
        {
            "name": "red_dot",
            "prompts": ["red dots", "small red dots"],  # the same text as red_dots
            "group": "colour",
            "provenance": {"kind": "curated"},
        }
    )
    return ConceptBank.from_dict(d)


def test_report_matches_independent_computations(bb):
    ds = dataset(48)
    bank = leaky_bank()
    rng = np.random.default_rng(5)
    ann = pd.DataFrame({"ruler": rng.integers(0, 2, 48).astype(float)})
    ann.loc[3, "ruler"] = np.nan  # unknown
    q = bank_quality(bank, bb, ds, ann, n_random=20, val_fraction=0.25, seed=1)
    assert q.sizes == {"concept": len(bank)}
    assert list(q["concept"].values) == list(bank.names)

    s = score_concepts(bb, ds, bank, show_progress=False)
    x = s.values.astype(np.float64)
    # AUROC against the annotation (NaN rows left out), NaN where none
    keep = ~np.isnan(ann["ruler"].values)
    expect = roc_auc_score(ann["ruler"].values[keep], x[keep, bank.names.index("ruler")])
    assert q["auroc"].sel(concept="ruler").item() == pytest.approx(expect)
    assert np.isnan(q["auroc"].sel(concept="red_dots").item())
    # margin over the random-words baseline
    r = score_concepts(bb, ds, random_words_bank(bank, 20, seed=1), show_progress=False)

    def lift(a):
        return np.sort(a, axis=0)[-5:].mean(0) - np.median(a, axis=0)

    thr = np.quantile(lift(r.values.astype(np.float64)), 0.9)
    np.testing.assert_allclose(q["margin"].values, lift(x) - thr, atol=1e-6)
    assert q.attrs["baseline_threshold"] == pytest.approx(thr, abs=1e-6)
    # redundancy in score space = highest Pearson correlation with another concept
    c = np.corrcoef(x.T)
    np.fill_diagonal(c, -np.inf)
    np.testing.assert_allclose(q["score_redundancy"].values, c.max(1), atol=1e-6)
    assert list(q["score_nearest"].values) == [bank.names[j] for j in c.argmax(1)]
    # a concept phrased like another is their mutual nearest neighbour in text space
    assert q["text_redundancy"].sel(concept="red_dot").item() == pytest.approx(1.0, abs=1e-5)
    assert q["text_nearest"].sel(concept="red_dot").item() == "red_dots"
    # drop-one: the same head refitted without each concept, by hand
    y = np.asarray(ds.labels)
    tr, va = train_test_split(np.arange(48), test_size=0.25, random_state=1, stratify=y)

    def val_loss(cols):
        sc = StandardScaler().fit(x[tr][:, cols])
        m = LogisticRegression(max_iter=5000).fit(sc.transform(x[tr][:, cols]), y[tr])
        return log_loss(y[va], m.predict_proba(sc.transform(x[va][:, cols])))

    full = val_loss(list(range(len(bank))))
    assert q.attrs["val_log_loss"] == pytest.approx(full, rel=1e-6)
    for j in (0, 3):
        cols = [k for k in range(len(bank)) if k != j]
        assert q["drop_one_loss"].values[j] == pytest.approx(val_loss(cols) - full, abs=1e-6)
    # suggestions: the class name leaks, the duplicate is merged
    sug = dict(zip(q["concept"].values, q["suggestion"].values, strict=True))
    assert sug["malignant_lesion"] == "reject: class-name leak"
    assert sug["red_dot"] in ("merge with red_dots", "reject: undetectable")
    assert bool(q["class_name_in_prompt"].sel(concept="malignant_lesion"))


def _report(**cols):
    n = len(next(iter(cols.values())))
    base = {
        "auroc": [np.nan] * n,
        "margin": [0.1] * n,
        "text_redundancy": [0.5] * n,
        "text_nearest": ["x"] * n,
        "score_redundancy": [0.5] * n,
        "score_nearest": ["x"] * n,
        "class_cosine": [0.3] * n,
        "class_name_in_prompt": [False] * n,
        "drop_one_loss": [0.01] * n,
    }
    base.update(cols)
    return xr.Dataset({k: ("concept", np.asarray(v)) for k, v in base.items()})


def test_suggestion_rules():
    rep = _report(
        auroc=[0.9, 0.55, np.nan, 0.9, 0.9, 0.9, 0.9, 0.9],
        margin=[0.1, 0.1, -0.01, 0.1, 0.1, 0.1, 0.1, 0.1],
        text_redundancy=[0.5, 0.5, 0.5, 0.95, 0.5, 0.5, 0.5, 0.5],
        text_nearest=["a", "b", "c", "veil", "e", "f", "g", "h"],
        score_redundancy=[0.5, 0.5, 0.5, 0.5, 0.97, 0.97, 0.5, 0.5],
        drop_one_loss=[0.01, 0.01, 0.01, 0.01, -0.002, 0.02, 0.01, 0.01],
        class_cosine=[0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.85, 0.3],
        class_name_in_prompt=[False] * 7 + [True],
    )
    assert suggest(rep) == [
        "keep",
        "reject: undetectable",  # AUROC below 0.6
        "reject: undetectable",  # no lift over random words
        "merge with veil",
        "reject: redundant",  # correlated and the head loses nothing
        "keep",  # correlated, but the head needs it
        "reject: class-name leak",
        "reject: class-name leak",
    ]


def test_annotation_errors(bb):
    ds = dataset(12)
    with pytest.raises(DataError, match="11 values for 12"):
        bank_quality(tiny_bank(), bb, ds, pd.DataFrame({"ruler": [0, 1] * 5 + [0]}), n_random=10)
    with pytest.raises(DataError, match="not a column of the dataset"):
        bank_quality(tiny_bank(), bb, ds, {"ruler": "nope"}, n_random=10)
    with pytest.raises(ConfigError, match="not in the bank"):
        bank_quality(tiny_bank(), bb, ds, {"veil": "site"}, n_random=10)
    with pytest.raises(DataError, match="must be 0/1"):
        bank_quality(tiny_bank(), bb, ds, {"ruler": np.arange(12)}, n_random=10)


def test_cli_quality(tmp_path):
    imgs = images(24, size=(36, 36), seed=3)
    rows = []
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(tmp_path / f"im{i}.png")
        rows.append(
            {"path": f"im{i}.png", "label": ["benign", "malignant"][i % 2], "ruler": i % 3 == 0}
        )
    pd.DataFrame(rows).assign(ruler=lambda d: d.ruler.astype(int)).to_csv(
        tmp_path / "m.csv", index=False
    )
    tiny_bank().save(tmp_path / "toy.yaml")
    ckpt = write_checkpoint(VIT_AVG, tmp_path / "tiny.safetensors")
    res = CliRunner().invoke(
        main,
        [
            "bank",
            "quality",
            str(tmp_path / "toy.yaml"),
            "--data",
            str(tmp_path / "m.csv"),
            "--backbone",
            str(ckpt),
            "--out",
            str(tmp_path / "q.nc"),
            "--csv",
            str(tmp_path / "q.csv"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert res.exit_code == 0, res.output
    q = xr.load_dataset(tmp_path / "q.nc")
    assert list(q["concept"].values) == list(tiny_bank().names)
    assert np.isfinite(q["auroc"].sel(concept="ruler").item())  # from the manifest column
    assert np.isnan(q["auroc"].sel(concept="red_dots").item())
    assert pd.read_csv(tmp_path / "q.csv")["concept"].tolist() == list(tiny_bank().names)
    assert "suggestion" in res.output
    assert "wrote" not in res.output  # the tests run quiet (CONCEPTLENS_QUIET=1)
    # the summary counts each kind of suggestion once ("reject: 2", not "reject:: 2")
    summary = res.output.strip().splitlines()[-1].split("concepts; ")[1]
    counts = dict(part.split(": ") for part in summary.split(", "))
    assert set(counts) <= {"keep", "reject", "merge"}
    kinds = pd.read_csv(tmp_path / "q.csv")["suggestion"].str.extract(r"^(keep|reject|merge)")[0]
    assert {k: int(v) for k, v in counts.items()} == kinds.value_counts().to_dict()


@pytest.mark.slow
def test_quality_on_synthderm(tmp_path):
    """On SynthDerm's ground truth, synthderm-lit detects every drawn concept."""
    import conceptlens as cl

    ds = cl.SynthDerm().generate(150, seed=0).to_dataset()
    q = bank_quality("synthderm", "synthderm-lit", ds, cache=tmp_path / "cache")
    assert q.attrs["n_annotated"] == 17
    assert float(q["auroc"].min()) > 0.9
    assert set(q["suggestion"].values) == {"keep"}
