"""MkDocs hook: the generated parts of the documentation site.

- The API reference: one page per subpackage of ``conceptlens`` listing every name in its
  ``__all__`` (grouped by the comments in that ``__all__``), a page for
  ``conceptlens.exceptions``, and an overview page of the top-level API built from the
  ``_API`` table of ``conceptlens/__init__.py``. Nothing is listed by hand, so the
  reference cannot drift from the package.
- The CLI reference, from the click commands (mkdocs-click).
- The notebooks: every ``studies/*.ipynb`` (found by glob), executed top to bottom with
  nbclient in a scratch directory at build time and rendered by mkdocs-jupyter. A cell that
  fails fails the build. ``CONCEPTLENS_DOCS_EXECUTE=0`` renders them unexecuted (a quick
  local preview only; CI always executes).

The generated pages are appended to the nav of mkdocs.yml. tests/test_docs_site.py uses
:func:`api_pages`, :func:`notebooks` and :func:`on_config` to check the site without
building it, so this module imports mkdocs only inside the build events.
"""

from __future__ import annotations

import ast
import importlib
import json
import logging
import os
import pkgutil
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.conceptlens")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "conceptlens"
API_DIR = "reference/api"
NOTEBOOK_DIR = "notebooks"
CLI_PAGE = "reference/cli.md"
API_INDEX = f"{API_DIR}/index.md"
EXCEPTIONS = f"{PACKAGE}.exceptions"

_state: dict[str, Any] = {}


# --------------------------------------------------------------------------- API pages


def _package_api() -> dict[str, tuple[str, ...]]:
    return dict(importlib.import_module(PACKAGE)._API)


def subpackages() -> list[str]:
    """Public subpackages of conceptlens, in the pipeline order of the ``_API`` table first."""
    found = sorted(
        f"{PACKAGE}.{m.name}"
        for m in pkgutil.iter_modules([str(ROOT / PACKAGE)])
        if m.ispkg and not m.name.startswith("_")
    )
    order = [m for m in _package_api() if m in found]
    return order + [m for m in found if m not in order]


def _all_groups(module: str) -> list[tuple[str, list[str]]]:
    """The names of ``module.__all__`` grouped under the comments written in it."""
    names = list(importlib.import_module(module).__all__)
    path = Path(importlib.import_module(module).__file__ or "")
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines))
    groups: list[tuple[str, list[str]]] = []
    for node in tree.body:
        targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            group = ""
            for line in lines[node.lineno - 1 : node.end_lineno]:
                comment = re.match(r"\s*#\s*(.+)", line)
                if comment:
                    group = comment.group(1).strip()
                for name in re.findall(r"[\"'](\w+)[\"']", line.split("#")[0]):
                    if name in names:
                        if not groups or groups[-1][0] != group:
                            groups.append((group, []))
                        groups[-1][1].append(name)
            break
    listed = {n for _, g in groups for n in g}
    rest = [n for n in names if n not in listed]
    if rest:
        groups.append(("other", rest))
    return groups


def _identifier(module: str, name: str) -> str:
    """Where griffe finds ``module.name``: the public path, unless it is imported lazily."""
    mod = importlib.import_module(module)
    if name in vars(mod):
        return f"{module}.{name}"
    obj = getattr(mod, name)  # a lazily imported name (module __getattr__)
    return f"{obj.__module__}.{obj.__qualname__}"


def _page_name(module: str) -> str:
    return f"{API_DIR}/{module.removeprefix(PACKAGE + '.')}.md"


def api_pages() -> dict[str, str]:
    """Generated API reference pages: path under docs/ -> Markdown source."""
    pages: dict[str, str] = {}
    modules = [*subpackages(), EXCEPTIONS]
    for module in modules:
        parts = [
            f"# `{module}`\n",
            f"::: {module}\n    options:\n      members: false\n      show_root_heading: false\n",
        ]
        for group, names in _all_groups(module):
            if group:
                parts.append(f"## {group[:1].upper()}{group[1:]}\n")
            for name in names:
                parts.append(
                    f"::: {_identifier(module, name)}\n    options:\n      heading_level: 3\n"
                )
        pages[_page_name(module)] = "\n".join(parts)

    # the overview: the top-level names (the _API table) -> their subpackage pages
    top = importlib.import_module(PACKAGE)
    parts = [
        f"# API reference\n\n::: {PACKAGE}\n    options:\n      members: false\n"
        "      show_root_heading: false\n",
        "## Subpackages\n",
        "| module | |\n|---|---|",
    ]
    for module in modules:
        doc = (importlib.import_module(module).__doc__ or "").strip().split("\n\n")[0]
        summary = " ".join(doc.split()).removeprefix(f"{module}: ")
        rel = _page_name(module).removeprefix(API_DIR + "/")
        parts.append(f"| [`{module}`]({rel}) | {summary} |")
    parts.append(
        "\n## Top-level names\n\n`import conceptlens as cl` re-exports these names, "
        "imported on first use:\n\n| name | defined in |\n|---|---|"
    )
    private = []
    for module, names in top._API.items():
        for name in names:
            if module.split(".")[1].startswith("_"):
                private.append(name)
                target = f"{PACKAGE}.{name}"
            else:
                target = _identifier(module, name)
            parts.append(f"| [`cl.{name}`][{target}] | `{module}` |")
    for name in top._EXCEPTIONS:
        parts.append(f"| [`cl.{name}`][{EXCEPTIONS}.{name}] | `{EXCEPTIONS}` |")
    if private:
        parts.append("\n## Top-level only\n")
        parts += [
            f"::: {PACKAGE}.{name}\n    options:\n      heading_level: 3\n" for name in private
        ]
    pages[API_INDEX] = "\n".join(parts)
    return pages


CLI_SOURCE = """# Command-line reference

Generated from the click commands; the [command-line guide](../cli.md) shows them at work.

::: mkdocs-click
    :module: conceptlens.cli
    :command: main
    :prog_name: conceptlens
    :depth: 1
    :style: plain
    :list_subcommands: true
"""


# --------------------------------------------------------------------------- notebooks


def notebooks() -> list[Path]:
    """Every notebook of studies/, found by glob."""
    return sorted((ROOT / "studies").glob("*.ipynb"))


def _notebook_title(path: Path) -> str:
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            m = re.match(r"#\s+(.+)", "".join(cell["source"]).strip())
            if m:
                return m.group(1).strip()
    return path.stem


def _kernel_manager(work: Path):
    """A kernel of this interpreter (the one that imports the conceptlens being documented),
    whatever kernelspecs the machine has installed."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    spec = work / "kernels" / "conceptlens-docs"
    if not spec.exists():
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        kernel = {"argv": argv, "display_name": "conceptlens docs", "language": "python"}
        (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(spec.parent)])
    return KernelManager(kernel_spec_manager=specs, kernel_name="conceptlens-docs")


def _execute(paths: list[Path], out_dir: Path) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    work = out_dir.parent / "work"
    work.mkdir()
    env_cache = os.environ.get("CONCEPTLENS_CACHE_DIR")
    os.environ["CONCEPTLENS_CACHE_DIR"] = str(work / "cache")  # the kernel inherits it
    try:
        for path in paths:
            start = time.perf_counter()
            nb = nbformat.read(path, as_version=4)
            cwd = work / path.stem
            cwd.mkdir()
            client = NotebookClient(
                nb, km=_kernel_manager(work), timeout=900, resources={"metadata": {"path": cwd}}
            )
            try:
                client.execute()
            except CellExecutionError as exc:
                from mkdocs.exceptions import PluginError

                raise PluginError(
                    f"{path.relative_to(ROOT)} failed while the site was built "
                    f"(run it top to bottom to reproduce):\n{exc}"
                ) from exc
            nbformat.write(nb, out_dir / path.name)
            log.info("executed %s in %.0f s", path.relative_to(ROOT), time.perf_counter() - start)
    finally:
        if env_cache is None:
            os.environ.pop("CONCEPTLENS_CACHE_DIR", None)
        else:
            os.environ["CONCEPTLENS_CACHE_DIR"] = env_cache


# --------------------------------------------------------------------------- events


def on_config(config):
    nav = config["nav"]
    nav.append(
        {"Notebooks": [{_notebook_title(p): f"{NOTEBOOK_DIR}/{p.name}"} for p in notebooks()]}
    )
    api = [{"Overview": API_INDEX}]
    api += [{m: _page_name(m)} for m in [*subpackages(), EXCEPTIONS]]
    nav.append({"Reference": [{"API": api}, {"Command line": CLI_PAGE}]})
    return config


def on_files(files, config):
    from mkdocs.structure.files import File

    for path, source in {**api_pages(), CLI_PAGE: CLI_SOURCE}.items():
        files.append(File.generated(config, path, content=source))
    tmp = tempfile.TemporaryDirectory(prefix="conceptlens-docs-")
    _state["tmp"] = tmp  # kept until the build ends
    out = Path(tmp.name)
    (out / NOTEBOOK_DIR).mkdir()
    paths = notebooks()
    if os.environ.get("CONCEPTLENS_DOCS_EXECUTE", "1") == "0":
        log.info("CONCEPTLENS_DOCS_EXECUTE=0: the notebooks are rendered unexecuted")
        for path in paths:
            (out / NOTEBOOK_DIR / path.name).write_bytes(path.read_bytes())
    else:
        _execute(paths, out / NOTEBOOK_DIR)
    for path in paths:
        files.append(
            File(
                f"{NOTEBOOK_DIR}/{path.name}",
                src_dir=str(out),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


_NOTEBOOK_LINK = re.compile(r"\]\(\.\./studies/([\w.-]+\.ipynb)\)")
_ITEM = re.compile(r"^( *)([-*+]|\d+\.) +\S")
_FENCE = re.compile(r"^ *(```|~~~)")
_CODE_SPAN = re.compile(r"`[^`]+`")


def gfm_lists(markdown: str) -> str:
    """Lists written for GitHub, read the same by Python-Markdown.

    docs/ is written to be read on GitHub too, where a list may follow a paragraph line
    directly and a nested item may be indented by two spaces. Python-Markdown needs a
    blank line before a list and four spaces per nesting level: this inserts the one and
    re-indents the other (outside fenced code blocks), relative to the first item's
    indent. A ``\\|`` in a code span of a table cell (GitHub's way to keep a pipe there)
    becomes the ``|`` Python-Markdown expects.
    """
    out: list[str] = []
    indents: list[int] = []  # indents of the open list items, outermost first
    fenced = False
    for line in markdown.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        if fenced or _FENCE.match(line):
            out.append(line)
            continue
        item = _ITEM.match(line)
        indent = len(line) - len(line.lstrip(" "))
        if item:
            if indents and indent < indents[0]:
                indents = []  # left of the list: a new one
            after_text = out and out[-1].strip() and not out[-1].lstrip().startswith("#")
            if not indents and after_text and item.group(2) in ("-", "*", "+", "1."):
                out.append("")  # a list straight after a paragraph line (as GitHub reads it)
            while indents and indents[-1] > indent:
                indents.pop()  # back out of deeper items
            if not indents or indent > indents[-1]:
                indents.append(indent)  # a nested item (or the first one)
            line = " " * (indents[0] + 4 * (len(indents) - 1)) + line.lstrip(" ")
        elif line.startswith("|"):
            # GitHub wants \| for a pipe in a code span of a table cell, Python-Markdown a |
            line = _CODE_SPAN.sub(lambda m: m.group(0).replace("\\|", "|"), line)
        elif not line.strip():
            pass  # a blank line may sit inside a list
        elif indents and indent <= indents[0]:
            indents = []  # a paragraph at the list's margin ends it
        out.append(line)
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """GitHub-style lists made explicit; links to ../studies/X.ipynb (right when reading
    docs/ on GitHub) pointed at the rendered notebook pages."""
    depth = page.file.src_uri.count("/")
    markdown = gfm_lists(markdown)
    return _NOTEBOOK_LINK.sub(lambda m: f"]({'../' * depth}{NOTEBOOK_DIR}/{m.group(1)})", markdown)


def on_post_build(config) -> None:
    tmp = _state.pop("tmp", None)
    if tmp is not None:
        tmp.cleanup()
