"""The documentation site's sources (mkdocs.yml, docs/hooks.py), checked without a build.

Every page of docs/ is in the nav, every notebook of studies/ gets a page, every public
name (the ``_API`` table, each subpackage's ``__all__``, the exceptions) has an entry in the
generated API reference, and every plot function a gallery entry. The strict build itself
(``mkdocs build --strict``, notebooks executed, gallery drawn) runs in CI.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest
import yaml

import conceptlens

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hooks():
    spec = importlib.util.spec_from_file_location("_conceptlens_docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config() -> dict:
    # mkdocs.yml uses no custom YAML tags, so safe_load reads it
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def _nav_paths(nav) -> list[str]:
    out: list[str] = []
    for entry in nav:
        if isinstance(entry, str):
            out.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                out += _nav_paths(value) if isinstance(value, list) else [value]
    return out


@pytest.fixture(scope="module")
def hooks():
    return _hooks()


@pytest.fixture(scope="module")
def pages(hooks) -> dict[str, str]:
    return hooks.api_pages()


def test_every_docs_page_is_in_the_nav():
    config = _config()
    nav = _nav_paths(config["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert pages, "no Markdown pages found in docs/"
    missing = [p for p in pages if p not in nav]
    assert not missing, f"add {missing} to the nav of mkdocs.yml"
    absent = [p for p in nav if not (DOCS / p).exists()]
    assert not absent, f"the nav of mkdocs.yml names pages that do not exist: {absent}"
    assert config["strict"] is True


def test_generated_pages_are_added_to_the_nav(hooks, pages):
    config = hooks.on_config({"nav": _config()["nav"]})
    nav = _nav_paths(config["nav"])
    for notebook in hooks.notebooks():
        assert f"{hooks.NOTEBOOK_DIR}/{notebook.name}" in nav
    assert sorted(p for p in nav if p.startswith(hooks.API_DIR + "/")) == sorted(pages)
    assert hooks.CLI_PAGE in nav
    assert nav.index(hooks.GALLERY_PAGE) == nav.index("plots.md") + 1


def test_the_gallery_draws_every_plot_function(hooks):
    """docs/gallery.py has an entry per name of conceptlens.plot.__all__ (and no other),
    and the gallery page shows each entry's code."""
    from conceptlens import plot

    gallery = hooks._gallery()
    assert list(gallery.FIGURES) == list(plot.__all__)
    page = hooks.gallery_page(drawn=True)
    assert page.count("```python") == len(gallery.FIGURES) + 1  # inputs() and each entry
    for name, function in gallery.FIGURES.items():
        assert f"plot.{name}(" in inspect.getsource(function), f"{name} must call plot.{name}"
        assert f"![{name}]({hooks.GALLERY_DIR}/{name}.png)" in page
    assert "Not in the gallery yet" not in page
    assert "![" not in hooks.gallery_page(drawn=False)


def test_notebooks_are_found_by_glob(hooks):
    found = hooks.notebooks()
    assert found == sorted((ROOT / "studies").glob("*.ipynb"))
    assert any(p.name == "quickstart.ipynb" for p in found)
    # the hook adds them before mkdocs-jupyter (priority 0) makes them pages
    assert hooks.on_files.mkdocs_priority > 0


def _documented(source: str) -> set[str]:
    """The identifiers of the mkdocstrings blocks (``::: path``) of a page."""
    return set(re.findall(r"^::: (\S+)$", source, flags=re.M))


def _page_of(hooks, module: str) -> str:
    return f"{hooks.API_DIR}/{module.removeprefix('conceptlens.')}.md"


def _resolves_to(identifier: str, obj) -> bool:
    module, _, name = identifier.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name) is obj
    except (ImportError, AttributeError):
        return False


def test_every_name_of_the_api_table_is_in_the_reference(hooks, pages):
    index = pages[hooks.API_INDEX]
    for module, names in conceptlens._API.items():
        for name in names:
            obj = getattr(conceptlens, name)
            assert f"`cl.{name}`" in index, f"{name} missing from the API overview"
            if module.split(".")[1].startswith("_"):  # documented on the overview page
                assert f"::: conceptlens.{name}" in index
                continue
            page = pages[_page_of(hooks, module)]
            hits = [i for i in _documented(page) if i.rsplit(".", 1)[-1] == name]
            assert hits, f"{module}.{name} has no entry on {_page_of(hooks, module)}"
            assert _resolves_to(hits[0], obj), f"{hits[0]} is not conceptlens.{name}"
    for name in conceptlens._EXCEPTIONS:
        assert f"::: conceptlens.exceptions.{name}" in pages[_page_of(hooks, hooks.EXCEPTIONS)]


@pytest.mark.parametrize(
    "module",
    sorted(
        f"conceptlens.{p.parent.name}"
        for p in (ROOT / "conceptlens").glob("*/__init__.py")
        if not p.parent.name.startswith("_")
    ),
)
def test_every_subpackage_name_is_in_the_reference(hooks, pages, module):
    page = pages[_page_of(hooks, module)]
    documented = _documented(page)
    mod = importlib.import_module(module)
    assert f"# `{module}`" in page
    for name in mod.__all__:
        hits = [i for i in documented if i.rsplit(".", 1)[-1] == name]
        assert hits, f"{module}.{name} has no entry on {_page_of(hooks, module)}"
        assert _resolves_to(hits[0], getattr(mod, name)), hits[0]


def test_github_style_lists_are_made_explicit_for_python_markdown(hooks):
    unchanged = (  # not a list item, and a fenced code block
        "A paragraph ending in 2000 images (seed\n"
        "0) scored by synthderm-lit.\n"
        "```\n"
        "- not a list in a code block\n"
        "  * nor this\n"
        "```\n"
    )
    source = (
        "Notes on the table:\n"
        "- first, with a nested list\n"
        "  * nested (two spaces, as GitHub reads it)\n"
        "    continued\n"
        "  * nested again\n"
        "- second\n\n" + unchanged
    )
    assert hooks.gfm_lists(source) == (
        "Notes on the table:\n"
        "\n"  # a blank line before the list
        "- first, with a nested list\n"
        "    * nested (two spaces, as GitHub reads it)\n"  # four spaces per level
        "    continued\n"
        "    * nested again\n"
        "- second\n\n" + unchanged
    )
    # and Python-Markdown then renders the nesting GitHub shows
    markdown = pytest.importorskip("markdown")
    html = markdown.markdown(hooks.gfm_lists(source))
    assert html.count("<ul>") == 2 and "<li>nested again</li>" in html
    assert "<p>Notes on the table:</p>" in html


def test_a_pipe_in_a_code_span_of_a_table_cell(hooks):
    row = "| `--on-error raise\\|skip` | a \\| b |"
    assert hooks.gfm_lists(row) == "| `--on-error raise|skip` | a \\| b |"
    markdown = pytest.importorskip("markdown")
    table = "| a | b |\n|---|---|\n" + hooks.gfm_lists(row)
    html = markdown.markdown(table, extensions=["tables"])
    assert "<td><code>--on-error raise|skip</code></td>" in html
