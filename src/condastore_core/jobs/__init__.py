"""Where work runs: in-process threads by default, RQ workers on Redis when configured.

Job functions (``functions``) are plain, importable by dotted path and keyed
by content, so the engine that runs them does not matter to them.
"""
