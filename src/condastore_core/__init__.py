"""condastore's core library: specs, solving, locks, installs, artifacts and the blob store.

Nothing here knows about HTTP or job queues; the web app, the registry, the CLI
and the workers all call into this package.
"""

#: The package version (pyproject.toml reads it from here; ``--version`` prints it).
__version__ = "0.1.0"
