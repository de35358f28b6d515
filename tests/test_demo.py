"""The end-to-end demo on the embedded default, at a small size."""

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from conceptlens._demo import format_summary, run_demo
from conceptlens.backbones import Backbone
from conceptlens.cli import main
from conceptlens.heads import load_head


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    cache = tmp_path_factory.mktemp("cache")
    result = run_demo(n=360, seed=1, out_dir=out, cache_dir=cache, n_boot=50)
    return result, out, cache


def test_outputs_are_written_and_reload(demo_run):
    result, out, _ = demo_run
    for name in ("scores.nc", "metrics.nc", "metrics.csv", "summary.txt"):
        assert (out / name).stat().st_size > 0
    scores = xr.open_dataarray(out / "scores.nc")
    assert scores.dims == ("sample", "concept")
    xr.testing.assert_allclose(scores.load(), result.scores)
    head = load_head(out / "model")
    # the saved head applies to the saved scores as they are, like the in-memory model
    np.testing.assert_array_equal(head.classes_, result.model.classes_)
    assert head.coef_.dims == ("class", "concept")
    np.testing.assert_allclose(
        head.predict_proba(scores), result.model.predict_proba(result.scores), atol=1e-10
    )


def test_metrics_match_sklearn_on_the_same_split(demo_run):
    result, _, _ = demo_run
    m = result.metrics
    assert set(m.model.values) == {"concept_bottleneck", "linear_probe"}
    assert m.estimate.dims == ("model", "split", "metric")
    scores = result.scores
    labels = scores["label"].values.astype(str)
    site = scores["site"].values.astype(str)
    train, test, held = (result.splits[k] for k in ("train", "in_domain", "heldout"))
    # the split is a partition: in-domain train/test at the training sites, held-out apart
    assert np.intersect1d(train, test).size == 0
    assert set(site[held]) == {m.attrs["heldout_site"]}
    assert m.attrs["heldout_site"] not in set(site[np.concatenate([train, test])])
    assert len(train) + len(test) + len(held) == scores.sizes["sample"]
    # independent recomputation: the decision function from coef_/intercept_ by numpy
    logits = scores.values[test] @ result.model.coef_.values.T + result.model.intercept_.values
    pred = np.asarray(result.model.classes_)[logits.argmax(1)]
    np.testing.assert_array_equal(pred, result.model.predict(scores.isel(sample=test)))
    est = m.estimate.sel(model="concept_bottleneck", split="in_domain")
    assert float(est.sel(metric="accuracy")) == pytest.approx(accuracy_score(labels[test], pred))
    assert float(est.sel(metric="balanced_accuracy")) == pytest.approx(
        balanced_accuracy_score(labels[test], pred)
    )
    # far above chance (1/3) on SynthDerm, whose concepts predict the class well
    assert float(est.sel(metric="accuracy")) > 0.6
    assert (m.ci_low <= m.estimate + 1e-12).all() and (m.estimate <= m.ci_high + 1e-12).all()


def test_rerun_hits_the_embedding_cache(demo_run, tmp_path, monkeypatch):
    _, _, cache = demo_run
    calls = []
    original = Backbone._image_forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Backbone, "_image_forward", counting)
    run_demo(n=360, seed=1, out_dir=None, cache_dir=cache, n_boot=0)
    assert calls == []


def test_summary_names_models_splits_and_concepts(demo_run):
    result, _, _ = demo_run
    text = format_summary(result)
    assert "concept_bottleneck" in text and "linear_probe" in text
    assert "heldout_site_c" in text
    for cls, items in result.top_concepts.items():
        assert cls in text
        for concept, _ in items:
            assert concept in text


def test_cli_demo_quiet(tmp_path):
    result = CliRunner().invoke(
        main,
        ["--quiet", "demo", "--n", "240", "--n-boot", "0", "--out", str(tmp_path / "o"),
         "--cache-dir", str(tmp_path / "c")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "concept_bottleneck" in result.output
    assert (tmp_path / "o" / "metrics.nc").exists()
    assert "finding: " in result.output
    assert (tmp_path / "o" / "audit.pdf").exists()


def test_preset_without_heldout_site_is_refused(tmp_path):
    from conceptlens.exceptions import ConfigError

    with pytest.raises(ConfigError, match="held-out site"):
        run_demo(n=100, preset="iid", out_dir=None, cache_dir=tmp_path)


def test_study_writes_both_reports_and_a_finding(demo_run):
    from tests.reports._pdf import assert_not_blank, pdf_words, rendered_pages

    result, out, _ = demo_run
    study = result.study
    assert study["reports"]["audit"] == out / "audit.pdf"
    words = pdf_words(out / "audit.pdf")
    assert "conceptlens demo: audit" in words and "Shortcut findings" in words
    first = study["finding"].split(". ")[0]
    assert " ".join(first.split()) in words  # the finding is the report's summary
    top = study["shortcuts"].iloc[0]
    assert top["concept"] in study["finding"]
    assert (out / "finding.txt").read_text().strip() == study["finding"]
    m = study["audit"].metrics.sel(model="concept_bottleneck", group="all", metric="accuracy",
                                   stat="estimate")  # fmt: skip
    assert f"{float(m.sel(split='in_domain')):.2f}" in study["finding"]
    case = out / "case_heldout_melanoma.pdf"
    cwords = pdf_words(case)
    assert "held-out-site melanoma" in cwords and "true class melanoma" in cwords
    assert "patch similarity maps" in cwords  # the case's concept maps are drawn
    for page in rendered_pages(case):
        assert_not_blank(page)
    masking = study["masking"]
    target = result.splits["heldout"]
    assert masking["n_shots"] < len(target)
    assert 0 <= masking["accuracy_before"] <= 1 and 0 <= masking["accuracy_after"] <= 1
    assert (out / "shortcut.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
