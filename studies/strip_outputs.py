"""Strip outputs from notebooks before committing them.

The notebooks in this folder are stored without outputs, execution counts or execution
metadata (tests/test_notebooks.py checks it); CI executes them. After running one in
Jupyter, strip it with::

    python studies/strip_outputs.py studies/*.ipynb      # rewrite in place
    python studies/strip_outputs.py --check studies/*.ipynb   # list, change nothing

(``jupyter nbconvert --clear-output --inplace studies/NAME.ipynb`` does the same for
outputs and counts.) Needs only nbformat (in the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# cell metadata that records a run rather than the notebook
RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def unstripped(nb: Any) -> list[str]:
    """What in ``nb`` (an nbformat v4 notebook) records a run; empty when stripped."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            if cell.get("outputs"):
                found.append(f"cell {i}: {len(cell.outputs)} output(s)")
            if cell.get("execution_count") is not None:
                found.append(f"cell {i}: execution count {cell.execution_count}")
        keys = [k for k in RUN_METADATA if k in cell.get("metadata", {})]
        if keys:
            found.append(f"cell {i}: run metadata {keys}")
    return found


def strip(nb: Any) -> Any:
    """Remove outputs, execution counts and run metadata from ``nb`` in place; return it."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in RUN_METADATA:
            cell.get("metadata", {}).pop(key, None)
    return nb


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="report only; exit 1 if any")
    args = parser.parse_args(argv)
    dirty = 0
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        problems = unstripped(nb)
        if not problems:
            continue
        dirty += 1
        if args.check:
            print(f"{path}: {'; '.join(problems)}")
        else:
            nbformat.validate(strip(nb))
            nbformat.write(nb, path)
            print(f"stripped {path}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
