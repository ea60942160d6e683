"""The service layer: namespaces, environments and builds over the database and blob store.

The REST API, the CLI (through the API) and the job functions call these
functions; none of them knows about HTTP. Each function takes a
:class:`~condastore_core.service.context.Context` and opens its own session.
"""
