"""MkDocs hook: the generated parts of the documentation site.

- The API reference: one page per subpackage of ``conceptlens`` listing every name in its
  ``__all__`` (grouped by the comments in that ``__all__``), a page for
  ``conceptlens.exceptions``, and an overview page of the top-level API built from the
  ``_API`` table of ``conceptlens/__init__.py``. Nothing is listed by hand, so the
  reference cannot drift from the package.
- The CLI reference, from the click commands (mkdocs-click).
- The figure gallery: every function of ``conceptlens.plot`` with the code that drew it
  (docs/gallery.py) and the figure, drawn at build time on a small version of the demo.
- The notebooks: every ``studies/*.ipynb`` (found by glob), executed top to bottom with
  nbclient in a scratch directory at build time and rendered by mkdocs-jupyter. A cell that
  fails fails the build. ``CONCEPTLENS_DOCS_EXECUTE=0`` renders them unexecuted and leaves the
  gallery undrawn (a quick local preview only; CI always executes).

The generated pages are appended to the nav of mkdocs.yml. tests/test_docs_site.py uses
:func:`api_pages`, :func:`notebooks` and :func:`on_config` to check the site without
building it, so this module imports mkdocs only inside the build events.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import logging
import os
import pkgutil
import re
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.conceptlens")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "conceptlens"
API_DIR = "reference/api"
NOTEBOOK_DIR = "notebooks"
CLI_PAGE = "reference/cli.md"
GALLERY_PAGE = "gallery.md"
GALLERY_DIR = "gallery"
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


def _execute(paths: list[Path], out_dir: Path, work: Path) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    # the kernels inherit these: one embedding cache for all, and no progress bars on the
    # pages (a bar is a widget or a stream of carriage returns, not a result)
    env = {"CONCEPTLENS_CACHE_DIR": str(work / "cache"), "CONCEPTLENS_QUIET": "1"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        for path in paths:
            start = time.perf_counter()
            nb = nbformat.read(path, as_version=4)
            cwd = work / path.stem
            cwd.mkdir()
            km = _kernel_manager(work)
            client = NotebookClient(nb, km=km, timeout=900, resources={"metadata": {"path": cwd}})
            try:
                client.execute()
            except CellExecutionError as exc:
                from mkdocs.exceptions import PluginError

                raise PluginError(
                    f"{path.relative_to(ROOT)} failed while the site was built "
                    f"(run it top to bottom to reproduce):\n{exc}"
                ) from exc
            finally:  # nbclient leaves a kernel it did not start running
                if client.kc is not None:
                    client.kc.stop_channels()
                if km.has_kernel:
                    km.shutdown_kernel(now=True)
            nbformat.write(nb, out_dir / path.name)
            log.info("executed %s in %.0f s", path.relative_to(ROOT), time.perf_counter() - start)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------- gallery


def _gallery():
    spec = importlib.util.spec_from_file_location(
        "_conceptlens_docs_gallery", Path(__file__).with_name("gallery.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gallery_page(drawn: bool) -> str:
    """The figure gallery: each ``conceptlens.plot`` function, its code and its figure."""
    gallery = _gallery()
    plot = importlib.import_module(f"{PACKAGE}.plot")
    parts = [
        "# Figure gallery\n",
        "Every function of [`conceptlens.plot`](plots.md), drawn when this site was built on "
        "the outputs of a small version of the demo: 800 SynthDerm `confounded` images "
        "scored by `synthderm-lit` with the SynthDerm bank, a sparse concept head and a "
        "linear probe fitted at the training sites (70 %), their audit on the rest, an "
        "intervention curve at the held-out site, a masking study, the bank quality "
        "report and the concept maps of a held-out-site melanoma. The data are built by "
        "`inputs()` in `docs/gallery.py`:\n",
        f"```python\n{inspect.getsource(gallery.inputs)}```\n",
    ]
    if not drawn:
        parts.append(
            "!!! note\n    The figures are drawn only when the site is built with the "
            "notebooks executed (this build had `CONCEPTLENS_DOCS_EXECUTE=0`).\n"
        )
    for name in plot.__all__:
        parts.append(f"## `{name}`\n\n[`plot.{name}`][{PACKAGE}.plot.{name}]\n")
        function = gallery.FIGURES.get(name)
        if function is None:
            parts.append("Not in the gallery yet.\n")
            continue
        body = inspect.getsource(function).split("\n", 1)[1]
        parts.append(f"```python\n{textwrap.dedent(body)}```\n")
        if drawn:
            parts.append(f"![{name}]({GALLERY_DIR.rsplit('/', 1)[-1]}/{name}.png)\n")
    return "\n".join(parts)


def _draw_gallery(cache: Path) -> dict[str, bytes]:
    """PNG bytes of every gallery figure; a warning while drawing fails a strict build."""
    import io
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from conceptlens._progress import is_quiet, set_quiet  # as the CLI's --quiet

    gallery = _gallery()
    start = time.perf_counter()
    quiet = is_quiet()
    set_quiet(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", ResourceWarning)  # the notebooks' closed kernels
            data = gallery.inputs(cache)
            images = {}
            for name, function in gallery.FIGURES.items():
                drawn = function(data)
                figure = (np.ravel(drawn)[0] if isinstance(drawn, np.ndarray) else drawn).figure
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
                images[name] = buffer.getvalue()
    finally:
        set_quiet(quiet)
    for w in caught:
        log.warning("figure gallery: %s: %s", w.category.__name__, w.message)
    log.info("drew the figure gallery in %.0f s", time.perf_counter() - start)
    return images


# --------------------------------------------------------------------------- events


def _insert_after(nav: list, page: str, entry: dict) -> bool:
    for i, item in enumerate(nav):
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if value == page:
            nav.insert(i + 1, entry)
            return True
        if isinstance(value, list) and _insert_after(value, page, entry):
            return True
    return False


def on_config(config):
    nav = config["nav"]
    if not _insert_after(nav, "plots.md", {"Figure gallery": GALLERY_PAGE}):
        nav.append({"Figure gallery": GALLERY_PAGE})
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
    work = out / "work"  # the notebooks' working folders, one embedding cache for all
    work.mkdir()
    (out / NOTEBOOK_DIR).mkdir()
    paths = notebooks()
    execute = os.environ.get("CONCEPTLENS_DOCS_EXECUTE", "1") != "0"
    if execute:
        _execute(paths, out / NOTEBOOK_DIR, work)
    else:
        log.info("CONCEPTLENS_DOCS_EXECUTE=0: notebooks unexecuted, gallery not drawn")
        for path in paths:
            (out / NOTEBOOK_DIR / path.name).write_bytes(path.read_bytes())
    for path in paths:
        files.append(
            File(
                f"{NOTEBOOK_DIR}/{path.name}",
                src_dir=str(out),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    # the cache the notebooks used ($CONCEPTLENS_CACHE_DIR of their kernels)
    images = _draw_gallery(work / "cache") if execute else {}
    files.append(File.generated(config, GALLERY_PAGE, content=gallery_page(drawn=execute)))
    for name, png in images.items():
        files.append(File.generated(config, f"{GALLERY_DIR}/{name}.png", content=png))
    return files


# before mkdocs-jupyter's on_files, which turns the notebook files into pages
on_files.mkdocs_priority = 100  # type: ignore[attr-defined]


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
    site = Path(config["site_dir"])
    for path in notebooks():
        page = f"{NOTEBOOK_DIR}/{path.stem}/index.html"
        if config["use_directory_urls"] and not (site / page).exists():
            log.warning("%s was not rendered as a page (no %s)", path.relative_to(ROOT), page)
