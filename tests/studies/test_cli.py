"""``conceptlens audit`` and ``conceptlens study masking``."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from conceptlens.cli import main
from conceptlens.heads import ConceptBottleneckClassifier, SparseLinearHead, save_head
from conceptlens.studies import load_audit
from tests.studies._synth import noisy_scores, synthderm_batch, synthderm_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    scores = noisy_scores(synthderm_batch(synthderm_config("confounded"), 900, seed=2))
    train = np.isin(scores.site.values, ["site_a", "site_b"])
    y = scores.label.values
    save_head(ConceptBottleneckClassifier(C=0.5).fit(scores[train], y[train]), d / "cbm")
    emb = np.random.default_rng(0).normal(size=(len(y), 4)) + (y == "melanoma")[:, None]
    np.save(d / "emb.npy", emb)
    save_head(SparseLinearHead(C=1.0).fit(emb[train], y[train]), d / "probe")
    xr.Dataset({"concept_score": scores}).to_netcdf(d / "scores.nc")
    return d


def test_audit_command_prints_and_writes(run_dir):
    d = run_dir
    args = ["audit", "--scores", str(d / "scores.nc"), "--model", f"cbm={d / 'cbm'}",
            "--model", f"probe={d / 'probe'}", "--input", f"probe={d / 'emb.npy'}",
            "--group", "skin_tone", "--reference", "site_a", "--n-boot", "50",
            "--shortcuts", "--out", str(d / "audit.nc")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "worst:skin_tone" in result.output and "paired difference cbm - probe" in result.output
    assert "shortcut suspects of cbm" in result.output
    lines = result.output.split("shortcut suspects of cbm")[1].splitlines()
    assert lines[2].split()[0] in {"purple_ink", "ruler"}
    ds = load_audit(d / "audit.nc")
    assert set(ds.model.values) == {"cbm", "probe"} and ds.attrs["n_boot"] == 50
    # a worst-group row gives the size of the group it names (the one worst in accuracy)
    for line in result.output.splitlines():
        parts = line.split()
        if len(parts) > 4 and parts[2] == "worst:skin_tone":
            model, split, tone, n = parts[0], parts[1], parts[3].strip("()"), int(parts[4])
            named = str(ds.worst_group.sel(model=model, split=split, group="worst:skin_tone",
                                           metric="accuracy").values)  # fmt: skip
            assert named == f"skin_tone={tone}"
            assert n == int(ds.n_cases.sel(split=split, group=named))
            acc = float(ds.metrics.sel(model=model, split=split, group=named,
                                       metric="accuracy", stat="estimate"))  # fmt: skip
            assert parts[5] == f"{acc:.3f}"


def test_audit_command_from_yaml_config(run_dir):
    d = run_dir
    (d / "study.yaml").write_text(
        "scores: scores.nc\nmodels:\n  cbm: cbm\nsplit: site\ngroups: [skin_tone]\n"
        "n_boot: 20\nout: from_config.nc\n"
    )
    result = CliRunner().invoke(main, ["audit", "--config", str(d / "study.yaml")])
    assert result.exit_code == 0, result.output
    assert load_audit(d / "from_config.nc").attrs["n_boot"] == 20


def test_audit_command_errors(run_dir):
    d = run_dir
    result = CliRunner().invoke(main, ["audit", "--scores", str(d / "scores.nc")])
    assert result.exit_code == 2 and "--model" in result.output
    result = CliRunner().invoke(
        main, ["audit", "--scores", str(d / "scores.nc"), "--model", f"cbm={d / 'cbm'}",
               "--group", "hospital"],
    )  # fmt: skip
    assert result.exit_code == 1 and "available columns" in result.output
    (d / "bad.yaml").write_text("scores: scores.nc\nmodel: cbm\n")
    result = CliRunner().invoke(main, ["audit", "--config", str(d / "bad.yaml")])
    assert result.exit_code == 1 and "unknown keys ['model']" in result.output
    result = CliRunner().invoke(main, ["study", "masking", "--out", str(d / "x.nc")])
    assert result.exit_code == 2 and "exactly one of" in result.output


@pytest.mark.slow
def test_study_masking_command_on_synthderm(tmp_path):
    result = CliRunner().invoke(
        main, ["study", "masking", "--synthderm", "confounded", "--n", "60", "--n-boot", "20",
               "--metadata", "site", "--cache-dir", str(tmp_path / "cache"),
               "--out", str(tmp_path / "grid.nc")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    grid = xr.load_dataset(tmp_path / "grid.nc")
    assert grid.auroc.sizes["train_condition"] == 5 and "no_roi_bb" in result.output


def test_study_masking_reuses_the_embedding_cache_like_score(tmp_path, monkeypatch):
    """The CLI defaults to the cache `score` and the demo use; --no-cache opts out."""
    import conceptlens.studies as studies
    from conceptlens.exceptions import ConfigError

    seen = []

    def fake(dataset, **kw):
        seen.append(kw["cache"])
        raise ConfigError("stopped after the cache was chosen")

    monkeypatch.setattr(studies, "masking_study", fake)
    monkeypatch.setenv("CONCEPTLENS_CACHE_DIR", str(tmp_path / "shared"))
    base = ["study", "masking", "--synthderm", "iid", "--n", "20", "--out", str(tmp_path / "g.nc")]
    for extra in ([], ["--no-cache"], ["--cache-dir", str(tmp_path / "mine")]):
        r = CliRunner().invoke(main, [*base, *extra])
        assert r.exit_code == 1 and "stopped after" in r.output, r.output
    assert [None if c is None else str(c) for c in seen] == [
        str(tmp_path / "shared"),
        None,
        str(tmp_path / "mine"),
    ]
    r = CliRunner().invoke(main, [*base, "--no-cache", "--cache-dir", str(tmp_path / "x")])
    assert r.exit_code == 2 and "not both" in r.output


def test_two_models_with_one_name_are_refused():
    """`--model a/head --model b/head` named both 'head'; the second silently replaced the
    first in the audit."""
    from conceptlens.exceptions import ConfigError
    from conceptlens.studies._cli import _pairs

    assert _pairs(("runs/a/head", "b=runs/b/head"), "--model") == {
        "head": "runs/a/head",
        "b": "runs/b/head",
    }
    with pytest.raises(ConfigError, match=r"two --model entries are named 'head'.*NAME=PATH"):
        _pairs(("runs/a/head", "runs/b/head"), "--model")
    with pytest.raises(ConfigError, match="named 'cbm'"):
        _pairs(("cbm=x", "cbm=y"), "--model")


def test_audit_input_that_is_not_a_npy_array_is_named(run_dir):
    d = run_dir
    (d / "emb.txt").write_text("1 2 3\n")
    for bad in ("emb.txt", "scores.nc", "missing.npy"):
        result = CliRunner().invoke(
            main, ["audit", "--scores", str(d / "scores.nc"), "--model", f"cbm={d / 'cbm'}",
                   "--input", f"cbm={d / bad}", "--out", str(d / "a.nc")],
        )  # fmt: skip
        assert result.exit_code == 1, result.output
        assert f"--input cbm={d / bad}" in result.output and "internal error" not in result.output
