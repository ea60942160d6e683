"""An S3-compatible server (moto's standalone server) on loopback, spoken to over HTTP."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.net import free_port


@contextmanager
def s3_server() -> Iterator[str]:
    port = free_port()
    # Its request log goes to a file: a pipe nobody reads fills up after some hundreds of
    # requests, and the server then blocks on its next log line, answering nothing.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    log.seek(0)
                    err = log.read().decode(errors="replace")
                    pytest.fail(f"the S3 server did not start on {url}:\n{err}")
                time.sleep(0.2)
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)
