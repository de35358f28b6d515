"""``python -m conceptlens``: the same as the ``conceptlens`` command."""

from conceptlens.cli import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="conceptlens")
