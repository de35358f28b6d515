import subprocess
import sys

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


def test_planned_command_fails_with_one_clear_line():
    result = CliRunner().invoke(main, ["report", "--anything"])
    assert result.exit_code == 1
    assert "not available" in result.output
    assert "Traceback" not in result.output


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
