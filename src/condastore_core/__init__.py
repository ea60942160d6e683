"""condastore's core library: specs, solving, locks, installs, artifacts and the blob store.

Nothing here knows about HTTP or job queues; the web app, the registry, the CLI
and the workers all call into this package.
"""

__version__ = "0.1.0"
