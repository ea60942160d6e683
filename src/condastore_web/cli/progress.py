"""Progress of long work on stderr: one redrawn line on a terminal, plain lines otherwise.

A terminal gets a bar (when the total is known, as for a download with a
length) or a spinner with the current step and the time spent; a log file or
a CI job gets one line per change, never carriage returns.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

SPINNER = "|/-\\"


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.started = time.monotonic()
        self.ticks = 0
        self._last_plain = ""
        self._last_draw = 0.0

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}m{seconds % 60:02d}s"

    def step(self, text: str) -> None:
        """The work is at ``text`` (a build's status and step)."""
        if not self.terminal:
            if text != self._last_plain:
                self.stream.write(f"{self.label}: {text}\n")
                self.stream.flush()
                self._last_plain = text
            return
        self.ticks += 1
        self._draw(f"{SPINNER[self.ticks % len(SPINNER)]} {self.label}: {text} ({self._elapsed()})")

    def advance(self, done: int, total: int | None = None) -> None:
        """``done`` bytes (of ``total``, if known) are through."""
        self.total = total if total is not None else self.total
        if not self.terminal:
            return  # a byte count per chunk is noise in a log; ``finish`` says the total
        now = time.monotonic()
        if now - self._last_draw < 0.1 and (self.total is None or done < self.total):
            return
        self._last_draw = now
        if self.total:
            width = 30
            filled = int(width * min(done, self.total) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            self._draw(f"{self.label} [{bar}] {_size(done)} of {_size(self.total)}")
        else:
            self._draw(f"{self.label} {_size(done)}")

    def _draw(self, line: str) -> None:
        width = shutil.get_terminal_size((80, 20)).columns - 1
        self.stream.write("\r" + line[:width].ljust(width))
        self.stream.flush()

    def finish(self, text: str) -> None:
        if self.terminal:
            self.stream.write("\r" + " " * (shutil.get_terminal_size((80, 20)).columns - 1) + "\r")
        self.stream.write(f"{self.label}: {text} ({self._elapsed()})\n")
        self.stream.flush()
