"""``python -m broker`` runs the ``broker`` command."""

from broker.cli import main

main()
