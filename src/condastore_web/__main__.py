"""``python -m condastore_web`` runs the ``condastore`` command."""

from condastore_web.cli import main

main()
