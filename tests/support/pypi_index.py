"""A PyPI-style package index (PEP 503 simple API) over HTTP, holding real wheels.

``/simple/`` lists the projects, ``/simple/<project>/`` links each file with
its ``#sha256=`` fragment, ``/files/<name>`` serves the bytes. Files can be
swapped after a lock was made (a tampered mirror), and every request is
recorded, so tests see what an install fetched.
"""

from __future__ import annotations

import hashlib
import html
import http.server
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

#: Real wheels the pip tests resolve and install (pure Python, any platform).
WHEELS = ("six==1.17.0", "packaging==24.2", "idna==3.10")


def project_of(filename: str) -> str:
    from packaging.utils import parse_sdist_filename, parse_wheel_filename

    name = (
        parse_wheel_filename(filename)[0]
        if filename.endswith(".whl")
        else parse_sdist_filename(filename)[0]
    )
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class PackageIndex:
    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    #: The Authorization header of each request, in order (None when absent).
    authorizations: list[str | None] = field(default_factory=list)
    #: When set, requests without this Authorization header get 401, as a private index.
    required_authorization: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def simple_url(self) -> str:
        return f"{self.url}/simple"

    def add(self, path: Path) -> None:
        self.files[path.name] = path.read_bytes()


class _Handler(http.server.BaseHTTPRequestHandler):
    index: PackageIndex

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._head_only = True
        self.do_GET()

    def do_GET(self) -> None:
        with self.index.lock:
            self.index.requests.append(self.path)
            self.index.authorizations.append(self.headers.get("Authorization"))
            files = dict(self.index.files)
        required = self.index.required_authorization
        if required and self.headers.get("Authorization") != required:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="index"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = self.path.split("?", 1)[0]
        if path.rstrip("/") == "/simple":
            projects = sorted({project_of(f) for f in files})
            body = "".join(f'<a href="/simple/{p}/">{p}</a>\n' for p in projects)
            return self._send(200, f"<html><body>\n{body}</body></html>\n".encode(), "text/html")
        match = re.fullmatch(r"/simple/([^/]+)/?", path)
        if match:
            wanted = re.sub(r"[-_.]+", "-", match[1]).lower()
            links = [
                f'<a href="/files/{html.escape(f)}#sha256={hashlib.sha256(d).hexdigest()}">'
                f"{html.escape(f)}</a>\n"
                for f, d in sorted(files.items())
                if project_of(f) == wanted
            ]
            if not links:
                return self._send(404, b"not found", "text/plain")
            page = f"<html><body>\n{''.join(links)}</body></html>\n".encode()
            return self._send(200, page, "text/html")
        if path.startswith("/files/") and path[len("/files/") :] in files:
            return self._send(200, files[path[len("/files/") :]], "application/octet-stream")
        return self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not getattr(self, "_head_only", False):
            self.wfile.write(body)


@contextmanager
def serve_index(index: PackageIndex) -> Iterator[PackageIndex]:
    """Serve ``index`` on a loopback port until the block ends."""
    handler = type("Handler", (_Handler,), {"index": index})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    index.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()


def sdist_only(directory: Path, name: str = "sdistonly", version: str = "1.0") -> Path:
    """A source distribution (no wheel) of a trivial project."""
    import io
    import tarfile

    target = directory / f"{name}-{version}.tar.gz"
    pkg_info = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    setup = b"from setuptools import setup\nsetup()\n"
    with tarfile.open(target, "w:gz") as tf:
        for member, data in (
            (f"{name}-{version}/PKG-INFO", pkg_info),
            (f"{name}-{version}/setup.py", setup),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return target


def make_wheel(directory: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel of one module, ``<name>.py``, requiring ``requires``."""
    import base64
    import zipfile

    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires)
        ).encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256="
        f"{base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
        f"{len(data)}\n"
        for path, data in files.items()
    )
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    target = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w") as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(2023, 11, 14, 22, 13, 20)), data)
    return target
