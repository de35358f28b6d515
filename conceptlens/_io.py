"""Small I/O helpers shared by the package: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "atomic_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "cache_root",
    "plain_file_mode",
    "read_json",
    "read_yaml",
    "sha256_file",
    "user_path",
]


def user_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`~pathlib.Path` with a leading ``~`` or ``~user`` expanded.

    Every path the library or the CLI takes from a user goes through this, so
    ``"~/data/manifest.csv"`` means the same in Python, on the command line and in an
    environment variable.

    Examples
    --------
    >>> import os
    >>> user_path("~/scores.nc") == Path(os.path.expanduser("~")) / "scores.nc"
    True
    >>> user_path("reports/demo").name
    'demo'
    """
    return Path(os.path.expanduser(os.fspath(path)))


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no read-only API elsewhere: set and restore at once
    os.umask(mask)
    return mask


def _as_if_created(path: Path, *, folder: bool) -> None:
    """Give a ``mkstemp``/``mkdtemp`` result the mode a plain ``open``/``mkdir`` would have.

    ``tempfile`` creates 0600 files and 0700 folders whatever the umask, which would leave
    every output unreadable to colleagues on a shared server.
    """
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def plain_file_mode(path: str | os.PathLike[str]) -> None:
    """Give a file the mode a plain ``open`` would have created it with (0o666 less the umask).

    For files written by a library that forces its own mode: ``safetensors``' ``save_file``
    creates 0600 files, which would leave a saved head or trained weights unreadable to
    colleagues on a shared server.

    Examples
    --------
    >>> import os, stat, tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "w.bin"
    >>> _ = f.write_bytes(b"x"); os.chmod(f, 0o600)
    >>> plain_file_mode(f)
    >>> stat.S_IMODE(f.stat().st_mode) == 0o666 & ~_umask()
    True
    """
    _as_if_created(Path(path), folder=False)


def cache_root() -> Path:
    """conceptlens' cache folder: ``$CONCEPTLENS_CACHE_DIR``, else ``$XDG_CACHE_HOME/conceptlens``,
    else ``~/.cache/conceptlens``.

    Embeddings and LLM responses live below it.

    Examples
    --------
    >>> import os
    >>> os.environ["CONCEPTLENS_CACHE_DIR"] = "/data/cl-cache"
    >>> str(cache_root())
    '/data/cl-cache'
    >>> del os.environ["CONCEPTLENS_CACHE_DIR"]
    """
    env = os.environ.get("CONCEPTLENS_CACHE_DIR")
    if env:
        return user_path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return user_path(base) / "conceptlens"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it over ``path`` only on success.

    A crash or exception inside the block leaves any earlier ``path`` untouched and
    removes the temporary file, so readers never see a half-written output. The file gets
    the permissions of a plainly created one (``0o666`` less the umask), and a leading
    ``~`` in ``path`` is expanded.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "out.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> (d / "out.txt").read_text()
    'done'
    """
    final = user_path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _as_if_created(tmp, folder=False)
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; put it at ``path`` only on success.

    The folder is built beside ``path`` (same file system). On success any earlier
    ``path`` is first renamed aside, the new folder renamed into place, and the old one
    removed, so there is never a moment without a complete ``path``. An exception inside
    the block removes the temporary folder and leaves any earlier ``path`` untouched.
    The folder gets the permissions of a plain ``mkdir`` (``0o777`` less the umask).

    Parameters
    ----------
    path : str or os.PathLike
        The folder to create or replace. Its parent is created if needed.

    Yields
    ------
    pathlib.Path
        An empty folder to fill; it becomes ``path`` when the block exits normally.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_dir(d / "index") as tmp:
    ...     _ = (tmp / "a.txt").write_text("done")
    >>> (d / "index" / "a.txt").read_text()
    'done'
    """
    final = user_path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        _as_if_created(tmp, folder=True)
        yield tmp
        if final.exists() or final.is_symlink():
            aside = Path(
                tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent)
            )
            old = aside / final.name
            os.rename(final, old)
            try:
                os.rename(tmp, final)
            except BaseException:
                os.rename(old, final)  # put the earlier version back
                shutil.rmtree(aside, ignore_errors=True)
                raise
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return user_path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_json(
    path: str | os.PathLike[str],
    *,
    what: str,
    fix: str,
    error: type[Exception] | None = None,
    max_bytes: int = 20_000_000,
) -> Any:
    """Parse a small JSON file, turning every way it can be unreadable into one error.

    A missing or unreadable file, more than ``max_bytes`` bytes, text that is not UTF-8,
    invalid JSON and nesting deep enough to exhaust the parser's recursion all raise
    ``error`` (default :class:`~conceptlens.exceptions.DataError`) with the message
    ``"<path>: not a readable <what> (<reason>); <fix>"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "x.json"
    >>> _ = f.write_text("[" * 100_000 + "]" * 100_000)
    >>> read_json(f, what="split file", fix="write one with save_splits()")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    conceptlens.exceptions.DataError: ...x.json: not a readable split file (nested too deeply); write one with save_splits()
    """  # noqa: E501

    def why(exc: Exception) -> str | None:
        if isinstance(exc, json.JSONDecodeError):
            return f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        return None

    return _read_guarded(path, json.loads, why, what=what, fix=fix, error=error,
                         max_bytes=max_bytes)  # fmt: skip


def read_yaml(
    path: str | os.PathLike[str],
    *,
    what: str,
    fix: str,
    error: type[Exception] | None = None,
    max_bytes: int = 20_000_000,
) -> Any:
    r"""Parse a small YAML configuration file with ``yaml.safe_load``, defensively.

    As :func:`read_json`, and aliases (``*name``) are refused before anything is built: a
    few hundred bytes of nested aliases expand to billions of items as soon as the value
    is printed or walked.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "study.yaml"
    >>> _ = f.write_text("a: &x [1, 2]\nb: *x\n")
    >>> read_yaml(f, what="study config", fix="write the values out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    conceptlens.exceptions.DataError: ...study.yaml: not a readable study config (line 2: YAML alias '*x'; aliases are not accepted); write the values out
    """  # noqa: E501

    def parse(text: str) -> Any:
        loader = NoAliasLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()

    def why(exc: Exception) -> str | None:
        if isinstance(exc, _YamlAlias):
            return f"{exc}; aliases are not accepted"
        if isinstance(exc, yaml.YAMLError):
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            return f"{where}invalid YAML ({getattr(exc, 'problem', None) or exc})"
        return None

    return _read_guarded(path, parse, why, what=what, fix=fix, error=error,
                         max_bytes=max_bytes)  # fmt: skip


class _YamlAlias(Exception):
    pass


class NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``) as they are met, in one parse.

    A few hundred bytes of nested aliases expand to billions of items as soon as the
    value is walked (a "billion laughs" bomb); configuration files have no need for them.
    Subclasses (the bank loader) change the error through :meth:`alias_error`.
    """

    def alias_error(self, event: Any) -> Exception:
        """The exception raised for the alias ``event``."""
        line = event.start_mark.line + 1 if event.start_mark else "?"
        return _YamlAlias(f"line {line}: YAML alias '*{event.anchor}'")

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise self.alias_error(self.peek_event())
        return super().compose_node(parent, index)


def _read_guarded(
    path: str | os.PathLike[str],
    parse: Callable[[str], Any],
    why: Callable[[Exception], str | None],
    *,
    what: str,
    fix: str,
    error: type[Exception] | None,
    max_bytes: int,
) -> Any:
    """Parse a small UTF-8 file; every failure one ``error`` naming the file and the reason.

    ``why`` turns the parser's own exceptions into a reason (``None``: not its own).
    """
    if error is None:
        from conceptlens.exceptions import DataError

        error = DataError
    p = user_path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            reason = f"{size:,} bytes, more than the {max_bytes:,} such a file can hold"
        else:
            return parse(p.read_text(encoding="utf-8"))
    except RecursionError:
        reason = "nested too deeply"
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    except Exception as exc:  # the parser's own errors, as ``why`` names them
        own = why(exc)
        if own is None:
            raise
        reason = own
    raise error(f"{p}: not a readable {what} ({reason}); {fix}")


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Return the hex SHA-256 digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(user_path(path), "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()
