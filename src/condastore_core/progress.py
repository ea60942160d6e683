"""How long work reports what it is doing: log lines and the current step.

The CLI prints these, the embedded pipeline writes them to the build log, and
workers (later) stream them to the service. Core code only sees this Protocol.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Reporter(Protocol):
    def log(self, message: str) -> None:
        """One line for the build log."""

    def step(self, name: str, current: int = 0, total: int = 0) -> None:
        """The build's current step (``solving``, ``installing`` n/m, ``packing``...)."""

    def check_canceled(self) -> None:
        """Raise ``BuildCanceled`` if the work was canceled; cheap, called often while it runs."""


class NullReporter:
    def log(self, message: str) -> None:
        pass

    def step(self, name: str, current: int = 0, total: int = 0) -> None:
        pass

    def check_canceled(self) -> None:
        pass


class CollectingReporter:
    """Keeps every line with a timestamp; the build log artifact is made from it."""

    def __init__(self, echo: Reporter | None = None) -> None:
        self.lines: list[str] = []
        self._echo = echo
        self._start = time.monotonic()

    def log(self, message: str) -> None:
        for line in message.splitlines() or [""]:
            self.lines.append(f"[{time.monotonic() - self._start:8.2f}s] {line}")
        if self._echo:
            self._echo.log(message)

    def step(self, name: str, current: int = 0, total: int = 0) -> None:
        if self._echo:
            self._echo.step(name, current, total)

    def check_canceled(self) -> None:
        if self._echo:
            self._echo.check_canceled()

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class StreamReporter:
    """Human progress on a terminal stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._last_step: tuple[str, int, int] | None = None

    def log(self, message: str) -> None:
        print(message, file=self._stream, flush=True)

    def step(self, name: str, current: int = 0, total: int = 0) -> None:
        key = (name, current, total)
        if key == self._last_step:
            return
        self._last_step = key
        suffix = f" {current}/{total}" if total else ""
        print(f"==> {name}{suffix}", file=self._stream, flush=True)

    def check_canceled(self) -> None:
        pass
