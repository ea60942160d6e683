"""The one interface every job engine implements."""

from __future__ import annotations

from typing import Protocol


class JobQueue(Protocol):
    def enqueue_build(self, build_id: int) -> None:
        """Run build ``build_id`` soon; enqueuing one already queued or running is a no-op."""

    def enqueue_pack(self, build_id: int) -> None:
        """Make the conda-pack tarball of a completed build (artifacts queue)."""

    def enqueue_layers(
        self, job_id: str, lock_json: str, platform: str, names: list[str], image: dict[str, str]
    ) -> None:
        """Build the image layers of packages ``names`` of a lock (``Lock`` as JSON).

        ``image`` holds the builder's ``prefix`` and ``compression``. A job id that
        is queued or running is not enqueued again; a finished or failed one is.
        """

    def layers_failure(self, job_id: str) -> str | None:
        """Why the last run of a layer job failed; None if it has not (yet)."""

    def wait_layers(self, job_ids: list[str], timeout: float) -> bool:
        """Wait until those layer jobs have all ended (True) or ``timeout`` passed (False)."""

    def stop_build(self, build_id: int, worker: str | None) -> None:
        """Stop a running build at once where the engine can (it was canceled)."""

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking work; with ``wait``, let running jobs finish."""
