"""``python -m spectracli``: the same as the ``spectracli`` console script."""

from spectracli.cli.app import main

if __name__ == "__main__":
    main()
