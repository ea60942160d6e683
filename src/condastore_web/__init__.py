"""condastore's REST API, web UI and ``condastore`` command line."""
