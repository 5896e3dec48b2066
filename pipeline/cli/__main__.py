"""``python -m pipeline.cli``: the same as the ``creditwatch`` console script."""

from pipeline.cli import main

main()
