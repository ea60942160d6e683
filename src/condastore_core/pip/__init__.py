"""pip dependencies: resolved with uv against a PyPI-style index, locked, installed after conda.

``records`` holds the locked wheel model, ``index`` where wheels come from (the
index URLs and credentials of an installation), ``resolve`` turns a spec's
``pip:`` list into locked wheels for the locked python, ``install`` puts them
into a prefix with the prefix's own interpreter. Only ``records`` is imported
by the lock; the rest load when a spec or lock has pip packages.
"""
