"""`python -m workbench ...`: the command line (workbench/cli.py)."""

from .cli import main

main()
