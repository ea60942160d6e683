"""Running uv: its executable (the ``uv`` package from PyPI) and a clean environment.

uv reads configuration from the environment and from files; none of the
server's own settings (``UV_*``, ``PIP_*``, proxies) may leak into a build, so
uv runs with ``--no-config`` and an environment stripped of them. When the
channel gate is enforced, every connection uv makes goes through the gate's
proxy, which admits each hop (redirects, the file host of an index).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from condastore_core.channels.gate import ChannelGate
from condastore_core.channels.proxy import proxy_for
from condastore_core.errors import CondastoreError

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def uv_executable() -> str:
    """The uv binary installed with condastore."""
    try:
        from uv import find_uv_bin
    except ImportError:  # pragma: no cover - a dependency of the project
        raise CondastoreError("uv is not installed; pip dependencies need it") from None
    return find_uv_bin()


@contextlib.contextmanager
def uv_environment(
    gate: ChannelGate, netrc: Path | None = None
) -> Iterator[tuple[dict[str, str], Callable[[], list[str]]]]:
    """uv's environment, and a function telling which hops the gate refused meanwhile."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("UV_", "PIP_")) and k.upper() not in _PROXY_VARIABLES
    }
    env["UV_NO_PROGRESS"] = "1"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["NETRC"] = str(netrc) if netrc else os.devnull
    proxy = proxy_for(gate)
    start = 0
    if proxy is not None:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env[name] = proxy.url
        start = proxy.refusal_count
    yield env, (lambda: proxy.refused_since(start) if proxy is not None else [])
