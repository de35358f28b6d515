"""The ``conceptlens`` command line.

Each command group lives next to the code it drives (``conceptlens/<package>/_cli.py``)
and is imported only when invoked, so ``conceptlens --version`` stays fast and a
command never pays for torch unless it needs it.

Errors: a problem with the input (a :class:`~conceptlens.exceptions.ConceptLensError`, an
unreadable file, a missing optional package) prints one line starting with ``error:`` and
exits with status 1; a wrong option or argument is click's usage error (status 2); an
unexpected exception is reported as a bug in conceptlens (status 1, ``--debug`` shows the
traceback); Ctrl-C exits with status 130.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import traceback
from typing import Any, NoReturn

import click

from conceptlens._cli_options import debug_option, printable, quiet_option
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
    "explain": ("conceptlens.explain._cli:explain", "Per-sample concept contributions."),
    "mask": ("conceptlens.masking._cli:mask", "Test-time concept masking at a new site."),
    "audit": ("conceptlens.studies._cli:audit_command", "Audit models across splits and groups."),
    "study": ("conceptlens.studies._cli:study", "Shortcut-masking study (Mask of truth grid)."),
    "report": ("conceptlens.reports._cli:report", "PDF case and audit reports."),
    "demo": ("conceptlens._cli_demo:demo", "Run the end-to-end demo on SynthDerm."),
}


def _planned(name: str, help_text: str) -> click.Command:
    @click.command(name=name, help=help_text, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def _cmd(args: tuple[str, ...]) -> None:
        raise ConceptLensError(
            f"`conceptlens {name}` is planned but not part of conceptlens {__version__}; "
            "`conceptlens --help` lists the commands this version has."
        )

    return _cmd


def _add_global_options(command: click.Command) -> click.Command:
    """Let ``--quiet``/``--debug`` follow any subcommand too (added once per command)."""
    names = {opt for p in command.params for opt in getattr(p, "opts", ())}
    for deco in (quiet_option, debug_option):
        probe = deco(click.Command("probe"))
        for param in probe.params:
            if not names & set(getattr(param, "opts", ())):
                command.params.append(param)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _add_global_options(sub)
    return command


def _input_files(value: Any) -> list[str]:
    """The existing files a parameter value names (``NAME=PATH`` pairs included)."""
    values = value if isinstance(value, list | tuple) else [value]
    out = []
    for v in values:
        if not isinstance(v, str | os.PathLike) or isinstance(v, bytes):
            continue
        text = os.fspath(v)
        for cand in (text, text.partition("=")[2]):
            if cand and os.path.isfile(os.path.expanduser(cand)):
                out.append(os.path.expanduser(cand))
                break
    return out


def _check_out_is_not_an_input(ctx: click.Context) -> None:
    """Refuse an ``--out`` that is the same file as one of the command's inputs.

    ``predict --scores s.nc --out s.nc`` would otherwise replace the scores with the
    predictions; every output is written atomically, so the input would be gone for good.
    """
    by_name = {p.name: p for p in ctx.command.params if isinstance(p, click.Option)}
    out_name = next((n for n, p in by_name.items() if "--out" in p.opts), None)
    out = ctx.params.get(out_name) if out_name else None
    if out is None or not os.path.isfile(os.path.expanduser(os.fspath(out))):
        return
    target = os.path.expanduser(os.fspath(out))
    for param in ctx.command.params:
        if param.name == out_name:
            continue
        for path in _input_files(ctx.params.get(param.name or "")):
            if os.path.samefile(path, target):
                label = (
                    param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
                )
                raise click.BadParameter(
                    f"{out} is also the input {label} {path}; writing there would replace "
                    "your input. Choose another --out.",
                    ctx=ctx,
                    param_hint="'--out'",
                )


def _guard_outputs(command: click.Command) -> click.Command:
    """Wrap each leaf command's callback with :func:`_check_out_is_not_an_input` (once)."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _guard_outputs(sub)
        return command
    callback = command.callback
    if callback is None or getattr(callback, "_conceptlens_out_guard", False):
        return command

    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_out_is_not_an_input(click.get_current_context())
        return callback(*args, **kwargs)

    guarded._conceptlens_out_guard = True  # type: ignore[attr-defined]
    command.callback = functools.update_wrapper(guarded, callback)
    return command


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        target, help_text = _COMMANDS[cmd_name]
        if target is None:
            return _add_global_options(_planned(cmd_name, help_text))
        module_name, attr = target.split(":")
        # an ImportError here is a missing dependency or a bug in the package; never
        # "not available yet" (the invoke handler below says which)
        module = importlib.import_module(module_name)
        command = getattr(module, attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return _guard_outputs(_add_global_options(command))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in sorted(_COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.UsageError):
            raise
        except click.ClickException as exc:  # e.g. click.FileError
            _fail(ctx, exc.format_message(), exc)
        except ConceptLensError as exc:
            _fail(ctx, str(exc), exc)
        except BrokenPipeError:
            # the reader went away (`conceptlens bank show x | head`): stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted; finished outputs are kept, rerun to resume", err=True)
            sys.exit(130)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or ""
            if isinstance(exc, ModuleNotFoundError) and not missing.startswith("conceptlens"):
                top = missing.split(".")[0]
                _fail(
                    ctx,
                    f"this command needs the Python package {top!r}, which is not installed "
                    f"(or is broken) in this environment; install it, e.g. `pip install {top}`",
                    exc,
                )
            _bug(ctx, exc)
        except OSError as exc:  # permission denied, disk full, not a directory, ...
            _fail(ctx, str(exc), exc)
        except Exception as exc:
            _bug(ctx, exc)


def _fail(ctx: click.Context, message: str, exc: BaseException) -> NoReturn:
    """Print ``error: message`` (continuation lines indented) and exit with status 1."""
    if ctx.meta.get("conceptlens.debug"):
        traceback.print_exception(exc)
    first, *rest = printable(message).strip().splitlines() or [type(exc).__name__]
    click.echo(f"error: {first}", err=True)
    for line in rest:
        click.echo(f"  {line.strip()}", err=True)
    sys.exit(1)


def _bug(ctx: click.Context, exc: BaseException) -> NoReturn:
    detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
    hint = "" if ctx.meta.get("conceptlens.debug") else "; rerun with --debug for the traceback"
    _fail(
        ctx,
        f"internal error in conceptlens {__version__} ({detail}); this is a bug, please "
        f"report it with the command you ran{hint}",
        exc,
    )


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="conceptlens")
@quiet_option
@debug_option
def main() -> None:
    """conceptlens: interpretable concept-bottleneck analysis of medical images.

    --quiet and --debug may also follow the subcommand. Errors print one `error:` line and
    exit with status 1; a usage mistake (unknown option, missing argument) exits with 2.
    """
    # without --quiet, CONCEPTLENS_QUIET=1 (or an earlier set_quiet(True)) still silences
    # progress output: the flag only ever turns quiet on


if __name__ == "__main__":  # pragma: no cover
    main()
