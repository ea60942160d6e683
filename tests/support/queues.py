"""Job queues for tests that decide themselves which process holds a build."""

from __future__ import annotations


class HeldQueue:
    """Accepts builds and runs none, noting each one it was given."""

    def __init__(self) -> None:
        self.enqueued: list[int] = []

    def enqueue_build(self, build_id: int) -> None:
        self.enqueued.append(build_id)
