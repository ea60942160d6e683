"""Build logs as append-only chunks: a line is one INSERT, never a rewrite of the whole log."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import func, select

from condastore_core.db.models import Build, LogChunk
from condastore_core.errors import BuildCanceled, InvalidRequest
from condastore_core.service.builds import find_build, tarball_pending
from condastore_core.service.context import Context

#: How often a running build looks for a cancellation request.
CANCEL_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class LogSlice:
    text: str
    next_offset: int
    finished: bool


class BuildLog:
    """A :class:`~condastore_core.progress.Reporter` writing into a build's log and step.

    Phase steps (those without a count, announced by the pipeline between phases)
    are where a build notices a cancellation and stops with :class:`BuildCanceled`;
    while a child process does package work, its waiter asks all the time
    (:meth:`check_canceled`) and kills the child at once.
    """

    def __init__(self, ctx: Context, build_id: int, start: int = 0) -> None:
        self._ctx = ctx
        self._build_id = build_id
        self._offset = start
        self._started = time.monotonic()
        self._last_step: str | None = None
        self._last_poll = 0.0

    def log(self, message: str) -> None:
        stamp = f"[{time.monotonic() - self._started:8.2f}s] "
        text = "".join(f"{stamp}{line}\n" for line in message.splitlines() or [""])
        with self._ctx.sessions.begin() as session:
            session.add(LogChunk(build_id=self._build_id, start=self._offset, text=text))
        self._offset += len(text)

    def step(self, name: str, current: int = 0, total: int = 0) -> None:
        label = f"{name} {current}/{total}" if total else name
        if label != self._last_step:
            self._last_step = label
            with self._ctx.sessions.begin() as session:
                session.get_one(Build, self._build_id).step = label[:64]
        if not total:
            self.check_canceled()

    def check_canceled(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_poll < CANCEL_POLL_SECONDS:
            return
        self._last_poll = now
        with self._ctx.sessions() as session:
            requested = session.scalar(
                select(Build.cancel_requested).where(Build.id == self._build_id)
            )
        if requested:
            raise BuildCanceled(f"build {self._build_id} was canceled")


def log_length(ctx: Context, build_id: int) -> int:
    with ctx.sessions() as session:
        return session.scalar(  # type: ignore[return-value]  # coalesce: never NULL
            select(func.coalesce(func.sum(func.length(LogChunk.text)), 0)).where(
                LogChunk.build_id == build_id
            )
        )


def read_log(ctx: Context, build_id: int, offset: int = 0) -> LogSlice:
    """The log from character ``offset`` on; clients tail by passing back ``next_offset``."""
    if offset < 0:
        raise InvalidRequest("offset must not be negative")
    with ctx.sessions() as session:
        build = find_build(session, build_id)
        finished = build.status.finished and not tarball_pending(ctx, build)
        chunks = session.scalars(
            select(LogChunk)
            .where(
                LogChunk.build_id == build_id,
                LogChunk.start + func.length(LogChunk.text) > offset,
            )
            .order_by(LogChunk.start)
        ).all()
    if not chunks:
        return LogSlice("", offset, finished)
    text = "".join(c.text for c in chunks)[max(0, offset - chunks[0].start) :]
    return LogSlice(text, max(offset, chunks[-1].start + len(chunks[-1].text)), finished)
