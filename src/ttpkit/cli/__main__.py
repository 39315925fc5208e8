"""``python -m ttpkit.cli``: the ``ttpkit`` command."""

from ttpkit.cli import main

main()
