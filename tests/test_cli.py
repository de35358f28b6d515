import subprocess
import sys

import pytest
from click.testing import CliRunner

from conceptlens import __version__
from conceptlens.cli import main


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_every_command_group():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for group in [
        "data",
        "backbone",
        "bank",
        "score",
        "fit",
        "explain",
        "audit",
        "report",
        "demo",
    ]:
        assert group in result.output


def _error_lines(output):
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_planned_command_fails_with_one_clear_line(monkeypatch):
    from conceptlens import cli

    monkeypatch.setitem(cli._COMMANDS, "report", (None, "PDF reports (planned)."))
    result = CliRunner().invoke(main, ["report", "--anything"])
    assert result.exit_code == 1
    assert len(_error_lines(result.output)) == 1
    assert "planned" in result.output and "conceptlens --help" in result.output
    assert "ROADMAP" not in result.output  # no such page exists
    assert "Traceback" not in result.output


def test_broken_import_inside_the_package_is_a_bug_not_a_plan(monkeypatch):
    from conceptlens import cli

    monkeypatch.setitem(cli._COMMANDS, "audit", ("conceptlens._no_such_module:audit", "x"))
    result = CliRunner().invoke(main, ["audit"])
    assert result.exit_code == 1
    (line,) = _error_lines(result.output)
    assert "internal error" in line and "bug" in line and "--debug" in line
    assert "planned" not in result.output and "not available" not in result.output


def test_missing_third_party_package_is_named(monkeypatch, tmp_path):
    from conceptlens import cli

    (tmp_path / "cl_cmd_needing_pkg.py").write_text("import no_such_pkg_for_cl_test\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli._COMMANDS, "audit", ("cl_cmd_needing_pkg:audit", "x"))
    result = CliRunner().invoke(main, ["audit"])
    assert result.exit_code == 1
    (line,) = _error_lines(result.output)
    assert "'no_such_pkg_for_cl_test'" in line and "pip install" in line


def test_quiet_and_debug_are_accepted_after_the_subcommand(monkeypatch, tmp_path):
    from conceptlens import _progress

    monkeypatch.setattr(_progress, "_QUIET", False)
    res = CliRunner().invoke(main, ["bank", "show", "synthderm", "--quiet"])
    assert res.exit_code == 0, res.output
    assert _progress.is_quiet() is True
    missing = str(tmp_path / "missing.csv")
    res = CliRunner().invoke(main, ["data", "info", missing])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert _error_lines(res.output) == [f"error: no such file or folder: {missing}"]
    res = CliRunner().invoke(main, ["data", "info", missing, "--debug"])
    assert res.exit_code == 1 and "Traceback" in res.output
    res = CliRunner().invoke(main, ["--debug", "data", "info", missing])
    assert res.exit_code == 1 and "Traceback" in res.output


def test_usage_errors_keep_clicks_status_2():
    res = CliRunner().invoke(main, ["bank", "show"])
    assert res.exit_code == 2 and "Missing argument" in res.output


def test_broken_pipe_is_silent(tmp_path):
    # the reader closes the pipe before the command writes (`bank show x | head -0`)
    proc = subprocess.Popen(
        [sys.executable, "-m", "conceptlens.cli", "bank", "show", "dermoscopy"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "BrokenPipe" not in err and "Traceback" not in err and "Exception" not in err
    assert proc.returncode in (0, 1)


def test_bank_show_on_a_folder_says_so(tmp_path):
    res = CliRunner().invoke(main, ["bank", "show", str(tmp_path)])
    assert res.exit_code == 1
    (line,) = _error_lines(res.output)
    assert "is a folder" in line and "does not exist" not in line


def test_scores_that_are_not_netcdf_get_a_clear_error(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,label\na.png,x\n")
    res = CliRunner().invoke(
        main,
        [
            "bank",
            "filter",
            "synthderm",
            "--scores",
            str(tmp_path / "manifest.csv"),
            "--cutoff",
            "0.1",
            "--out",
            str(tmp_path / "b.yaml"),
        ],
    )
    assert res.exit_code == 1
    (line,) = _error_lines(res.output)
    assert "not a netCDF file" in line and "conceptlens score" in line
    assert "backend" not in res.output.lower() and "engine" not in res.output.lower()


def test_demo_refuses_too_few_images_up_front():
    from conceptlens._demo import MIN_N

    res = CliRunner().invoke(main, ["demo", "--n", "10"])
    assert res.exit_code == 2
    assert f"x>={MIN_N}" in res.output.replace(" ", "")


def test_demo_preset_option_reaches_run_demo(tmp_path):
    """--preset names any preset or YAML file; one without a held-out site is refused."""
    out = ["--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]
    res = CliRunner().invoke(main, ["demo", "--preset", "iid", *out])
    assert res.exit_code == 1 and "held-out site" in res.output and "'iid'" in res.output
    res = CliRunner().invoke(main, ["demo", "--preset", "confounded-typo", *out])
    assert res.exit_code == 1 and "confounded" in res.output
    assert "Traceback" not in res.output


def test_cli_paths_expand_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(
        main, ["bank", "filter", "synthderm", "--max-words", "50", "--out=~/banks/f.yaml"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "banks" / "f.yaml").is_file()
    assert not (tmp_path / "~").exists()
    res = CliRunner().invoke(main, ["bank", "validate", "~/banks/f.yaml"])
    assert res.exit_code == 0, res.output
    # click's own existence check sees the expanded path too
    import numpy as np
    import xarray as xr

    from conceptlens.concepts import load_bank

    names = list(load_bank("synthderm").names)
    xr.DataArray(
        np.zeros((4, len(names)), np.float32),
        dims=("sample", "concept"),
        coords={"sample": list("abcd"), "concept": names},
        name="concept_score",
    ).to_netcdf(tmp_path / "s.nc")
    res = CliRunner().invoke(
        main,
        ["bank", "filter", "synthderm", "--scores=~/s.nc", "--cutoff", "-1", "--out", "~/g.yaml"],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "g.yaml").is_file()


def test_console_script_runs_as_module():
    out = subprocess.run(
        [sys.executable, "-m", "conceptlens.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert __version__ in out.stdout


def test_quiet_flag_silences_and_absent_flag_keeps_env_setting(monkeypatch):
    from conceptlens import _progress

    monkeypatch.setattr(_progress, "_QUIET", False)
    assert CliRunner().invoke(main, ["--quiet", "data", "--help"]).exit_code == 0
    assert _progress.is_quiet() is True
    # as if CONCEPTLENS_QUIET=1 was set: no --quiet must not switch it back on
    assert CliRunner().invoke(main, ["data", "--help"]).exit_code == 0
    assert _progress.is_quiet() is True


def test_fit_on_a_manifest_says_what_scores_are(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,label\na.png,x\n")
    res = CliRunner().invoke(
        main,
        ["fit", "--scores", str(tmp_path / "manifest.csv"), "--label", "label", "--out",
         str(tmp_path / "m")],
    )  # fmt: skip
    assert res.exit_code == 1
    (line,) = _error_lines(res.output)
    assert "not a netCDF file" in line
    assert "backend" not in res.output.lower() and "engine" not in res.output.lower()


# flags of other programs that error hints quote
_EXTERNAL_FLAGS = {"--force-reinstall", "--local-dir", "--raw", "--help"}


def _cli_option_names():
    import click

    from conceptlens import cli

    names = {"--help", "--version"}

    def walk(cmd):
        for p in cmd.params:
            names.update(o for o in getattr(p, "opts", ()) + getattr(p, "secondary_opts", ()))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    ctx = click.Context(main)
    walk(main)
    for name, (target, _) in cli._COMMANDS.items():
        if target is not None:
            walk(main.get_command(ctx, name))
    return names


def test_every_option_named_in_messages_and_help_exists():
    import io
    import re
    import tokenize
    from pathlib import Path

    import conceptlens

    known = _cli_option_names() | _EXTERNAL_FLAGS
    assert {"--cache-dir", "--label-column", "--out", "--root", "--on-error"} <= known
    unknown = []
    root = Path(conceptlens.__file__).parent
    for path in sorted(root.rglob("*.py")):
        if path.name in ("_train_lit.py", "_evaluate_lit.py"):  # argparse entry points
            continue
        toks = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        for tok in toks:
            if tok.type != tokenize.STRING:
                continue
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", tok.string):
                if flag not in known:
                    unknown.append(f"{path.relative_to(root)}:{tok.start[0]}: {flag}")
    assert unknown == []


def test_the_same_thing_has_the_same_option_name_everywhere():
    import click

    from conceptlens import cli

    canonical = {
        "cache": "--cache-dir",
        "cache_dir": "--cache-dir",
        "label": "--label-column",
        "label_column": "--label-column",
        "path_column": "--path-column",
        "root": "--root",
        "on_error": "--on-error",
        "out": "--out",
        "out_dir": "--out",
        "output": "--out",
    }
    wrong = []

    def walk(cmd, path):
        for p in cmd.params:
            want = canonical.get(p.name or "")
            if isinstance(p, click.Option) and want and want not in p.opts:
                wrong.append(f"{path} {p.opts}: use {want}")
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}")

    ctx = click.Context(main)
    for name, (target, _) in cli._COMMANDS.items():
        if target is not None:
            walk(main.get_command(ctx, name), name)
    assert wrong == []


def _walk_params(visit):
    import click

    from conceptlens import cli

    def walk(cmd, path):
        for p in cmd.params:
            visit(path, p)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}")

    ctx = click.Context(main)
    for name, (target, _) in cli._COMMANDS.items():
        if target is not None:
            walk(main.get_command(ctx, name), name)


def test_every_path_parameter_expands_home():
    """A plain click.Path would leave ``--out=~/x`` as a folder literally named ``~``."""
    import click

    from conceptlens._cli_options import UserPath

    plain = []

    def visit(path, p):
        if isinstance(p.type, click.Path) and not isinstance(p.type, UserPath):
            plain.append(f"{path} {p.opts or p.name}")

    _walk_params(visit)
    assert plain == []


def test_label_column_defaults_to_the_coordinate_score_writes():
    """`score` writes labels to the `label` coordinate; no command should require naming it."""
    required = []

    def visit(path, p):
        if "--label-column" in getattr(p, "opts", ()) and p.required:
            required.append(path)

    _walk_params(visit)
    assert required == []


def test_out_that_is_an_input_file_is_refused(tmp_path, monkeypatch):
    """`--out` naming one of the command's input files would replace the input for good."""
    monkeypatch.setenv("HOME", str(tmp_path))
    bank = tmp_path / "b.yaml"
    res = CliRunner().invoke(main, ["bank", "filter", "synthderm", "--out", str(bank)])
    assert res.exit_code == 0, res.output
    before = bank.read_bytes()
    (tmp_path / "link.yaml").symlink_to(bank)
    for out in (str(bank), "~/b.yaml", str(tmp_path / "link.yaml")):
        res = CliRunner().invoke(
            main, ["bank", "filter", str(bank), "--max-words", "1", "--out", out]
        )
        assert res.exit_code == 2, res.output
        assert "would replace your input" in res.output and "BANK_REF" in res.output
        assert bank.read_bytes() == before
    # a new file next to it is fine
    res = CliRunner().invoke(
        main, ["bank", "filter", str(bank), "--max-words", "50", "--out", str(tmp_path / "c.yaml")]
    )
    assert res.exit_code == 0, res.output


def test_package_runs_as_module():
    out = subprocess.run(
        [sys.executable, "-m", "conceptlens", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert __version__ in out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "--scores", "s.nc", "--out", "m", "--n-boot", "-3"],
        ["fit", "--scores", "s.nc", "--out", "m", "--C", "nan"],
        ["fit", "--scores", "s.nc", "--out", "m", "--l1-ratio", "1.5"],
        ["explain", "--model", ".", "--scores", "s.nc", "--out", "e", "--cases", "-1"],
        ["score", "--data", "m.csv", "--bank", "b", "--out", "s.nc", "--max-aspect-ratio", "nan"],
        ["score", "--data", "m.csv", "--bank", "b", "--out", "s.nc", "--max-aspect-ratio", "0.5"],
        ["bank", "filter", "synthderm", "--out", "f.yaml", "--duplicates", "nan"],
        ["bank", "filter", "synthderm", "--out", "f.yaml", "--class-ratio", "5"],
        ["bank", "filter", "synthderm", "--out", "f.yaml", "--cutoff", "inf"],
        ["bank", "filter", "synthderm", "--out", "f.yaml", "--select", "0"],
        ["bank", "retrieve", "--classes", "a", "--out", "r.yaml", "--k", "0"],
        ["demo", "--n-boot", "-1"],
        ["mask", "fit", "--model", ".", "--scores", "s.nc", "--out", "a", "--min-gain", "inf"],
        [
            "mask",
            "fit",
            "--model",
            ".",
            "--scores",
            "s.nc",
            "--out",
            "a",
            "--max-source-drop",
            "nan",
        ],
        ["audit", "--scores", "s.nc", "--model", "m=.", "--n-boot", "-1"],
    ],
    ids=lambda a: " ".join(a[:2] + a[-2:]),
)
def test_out_of_range_numbers_are_usage_errors(tmp_path, monkeypatch, args):
    """nan passes every range comparison, and negative counts were accepted silently
    (`fit --n-boot -3` saved a model, `--max-aspect-ratio nan` switched the check off)."""
    monkeypatch.chdir(tmp_path)
    for name in ("s.nc", "m.csv"):
        (tmp_path / name).write_text("x")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert "Invalid value" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "s.nc"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["study", "masking", "--out", "x.nc"], "exactly one of --manifest"),
        (["bank", "retrieve", "--classes", "a,b", "--out", "b.yaml"], "give --corpus"),
        (["bank", "retrieve", "--classes", ",", "--corpus", "{t}", "--out", "b.yaml"],
         "at least one class"),
        (["bank", "quality", "synthderm", "--data", "{m}", "--out", "q.csv"], ".nc"),
        (["audit", "--scores", "{m}", "--model", "cbm="], "NAME=PATH"),
        (["audit", "--scores", "{m}"], "at least one --model"),
    ],
)  # fmt: skip
def test_option_combination_mistakes_are_usage_errors(tmp_path, args, message):
    """Like any usage mistake the parser catches: click's usage message, status 2."""
    m = tmp_path / "m.csv"
    m.write_text("path,label\n", encoding="utf-8")
    t = tmp_path / "c.txt"
    t.write_text("Nevi are symmetric.\n", encoding="utf-8")
    res = CliRunner().invoke(main, [a.format(m=m, t=t) for a in args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Usage:" in res.output
