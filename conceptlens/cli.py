"""The ``conceptlens`` command line.

Each command group lives next to the code it drives (``conceptlens/<package>/_cli.py``)
and is imported only when invoked, so ``conceptlens --version`` stays fast and a
command never pays for torch unless it needs it.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

import click

from conceptlens._progress import set_quiet
from conceptlens._version import __version__
from conceptlens.exceptions import ConceptLensError

__all__ = ["main"]

# name -> ("module:attribute", one-line help). Commands not built yet point to None.
_COMMANDS: dict[str, tuple[str | None, str]] = {
    "data": ("conceptlens.data._cli:data", "Inspect datasets; generate SynthDerm."),
    "backbone": ("conceptlens.backbones._cli:backbone", "List, inspect and load backbones."),
    "bank": ("conceptlens.concepts._cli:bank", "Concept banks: list, show, validate, build."),
    "score": ("conceptlens.concepts._cli_score:score", "Score a concept bank on images."),
    "fit": ("conceptlens.heads._cli:fit", "Fit a concept-bottleneck head on scores."),
    "predict": ("conceptlens.heads._cli:predict", "Apply a saved head to concept scores."),
    "explain": (None, "Explain predictions in concepts (planned)."),
    "audit": (None, "Robustness audits and shortcut studies (planned)."),
    "report": (None, "PDF case and audit reports (planned)."),
    "demo": ("conceptlens._demo:demo", "Run the end-to-end demo on SynthDerm."),
}


def _planned(name: str, help_text: str) -> click.Command:
    @click.command(name=name, help=help_text, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def _cmd(args: tuple[str, ...]) -> None:
        raise ConceptLensError(
            f"`conceptlens {name}` is not available in conceptlens {__version__} yet; "
            "see ROADMAP in the documentation for when it lands."
        )

    return _cmd


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        target, help_text = _COMMANDS[cmd_name]
        if target is None:
            return _planned(cmd_name, help_text)
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.startswith("conceptlens"):
                return _planned(cmd_name, help_text)
            raise
        command = getattr(module, attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in sorted(_COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except ConceptLensError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted; finished outputs are kept, rerun to resume", err=True)
            sys.exit(130)
        except Exception as exc:
            if debug:
                traceback.print_exc()
            click.echo(
                f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                err=True,
            )
            sys.exit(1)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="conceptlens")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or informational output.")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(quiet: bool, debug: bool) -> None:
    """conceptlens: interpretable concept-bottleneck analysis of medical images."""
    # --debug is read by _LazyGroup.invoke; without --quiet, CONCEPTLENS_QUIET=1 (or an
    # earlier set_quiet(True)) still silences progress output
    if quiet:
        set_quiet(True)


if __name__ == "__main__":  # pragma: no cover
    main()
