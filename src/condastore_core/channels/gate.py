"""The one gate every URL the server fetches passes: channels, package URLs, registries.

A shared server fetches what its users name: spec channels, the package URLs
of a submitted ``conda-lock.yml``, channels of a solve preview or a package
search, and, for base images, whatever an upstream registry redirects to.
Left open, that is a way into the server's own network and disk (``file:///etc``,
``http://127.0.0.1:6379``, ``http://169.254.169.254``). The gate decides, before
any connection is made:

* URLs under the configured channels (settings ``channels`` and
  ``channel_alias``, and registries named as image bases) are allowed: an
  administrator chose them;
* ``file://`` URLs only inside ``allowed_channel_dirs`` (symlinks resolved);
* ``http(s)://`` URLs only when every address the host resolves to is public,
  or lies in ``allowed_networks`` (CIDRs or host names an administrator
  allowed): a name resolving to 127.0.0.1 is loopback like 127.0.0.1 itself;
* other schemes only as configured channels.

URLs the server fetches itself go through :class:`~.fetch.GatedSession`, which
checks every redirect; rattler, which fetches on its own, connects through the
gate's proxy (:mod:`.proxy`), which admits each hop. A namespace policy's
``allowed_channels`` narrows the gate further
(:meth:`ChannelGate.narrowed`). A refusal is one :class:`ChannelRefused` whose
text names the rule and says nothing of what was found at the target (whether
it resolved, whether a port was open): the gate refuses before connecting, so
there is nothing to tell.

``condastore lock``/``build`` on one's own machine run with the gate open
(``channel_gate = "open"``): the user may fetch anything they could fetch
themselves. Servers and workers enforce it (the default).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import posixpath
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from condastore_core.channels.names import DEFAULT_CHANNEL_ALIAS, channel_url
from condastore_core.errors import CondastoreError

if TYPE_CHECKING:
    from condastore_core.channels.mirrors import ChannelAccess
    from condastore_core.lock import Lock
    from condastore_core.settings import Settings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_DEFAULT_PORTS = {"http": 80, "https": 443}

SERVER_RULE = "channel gate"
POLICY_RULE = "allowed_channels"


class ChannelRefused(CondastoreError):
    """A URL the gate does not let the server fetch; names the rule, never the target's state."""

    code = "CHANNEL_REFUSED"

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"policy '{rule}': {message}", detail={"rule": rule})
        self.rule = rule


def _refused(shown: str) -> ChannelRefused:
    return ChannelRefused(
        SERVER_RULE,
        f"{shown} may not be fetched by this server; it fetches the configured channels, "
        "public http(s) hosts, and the directories and networks an administrator allowed "
        "(settings allowed_channel_dirs, allowed_networks)",
    )


def normalize_url(url: str) -> str:
    """``url`` without a trailing slash, its ``.``/``..`` path segments resolved.

    Prefix comparisons run on this form, so ``<allowed>/../elsewhere`` is not
    taken for a URL under ``<allowed>``.
    """
    parts = urlsplit(url.strip())
    path = posixpath.normpath(unquote(parts.path)) if parts.path else ""
    if path in (".", "/"):
        path = ""
    netloc = parts.netloc.lower()
    return f"{parts.scheme.lower()}://{netloc}{path}"


def _under(url: str, prefixes: Iterable[str]) -> bool:
    return any(url == p or url.startswith(p + "/") for p in prefixes)


@dataclass(frozen=True)
class ChannelGate:
    """Decides which URLs may be fetched. Build it with :func:`gate_for`; it holds no state."""

    #: False for a process on the user's own machine: everything passes but a policy.
    enforce: bool = True
    #: Normalised URLs under which everything is allowed (configured channels, alias).
    configured: tuple[str, ...] = ()
    #: Resolved directories whose ``file://`` URLs are allowed.
    allowed_dirs: tuple[Path, ...] = ()
    #: Networks whose addresses may be contacted though not public.
    allowed_networks: tuple[IPNetwork, ...] = ()
    #: Host names allowed whatever they resolve to (an administrator named them).
    allowed_hosts: tuple[str, ...] = ()
    #: A namespace policy's allowed channels (normalised URLs), or None for no policy.
    narrowed_to: tuple[str, ...] | None = None
    channel_alias: str = DEFAULT_CHANNEL_ALIAS
    #: conda's ``custom_channels``: (name, server URL).
    custom_channels: tuple[tuple[str, str], ...] = ()
    #: Where each channel is really fetched from, and with which credentials.
    access: ChannelAccess = dataclasses.field(default_factory=lambda: _no_access())

    def channel_url(self, channel: str) -> str:
        """The canonical URL of ``channel`` (a name, path or URL) in this installation."""
        return channel_url(channel, self.channel_alias, dict(self.custom_channels))

    # -- building -------------------------------------------------------------------

    def narrowed(self, allowed_channels: Iterable[str] | None) -> ChannelGate:
        """This gate, also limited to a policy's ``allowed_channels`` (None: unchanged)."""
        if allowed_channels is None:
            return self
        urls = tuple(normalize_url(self.channel_url(c)) for c in allowed_channels)
        if self.narrowed_to is not None:
            urls = tuple(u for u in urls if _under(u, self.narrowed_to))
        return dataclasses.replace(self, narrowed_to=urls)

    def with_configured(self, *urls: str) -> ChannelGate:
        """This gate with ``urls`` allowed as if configured (a registry named in settings)."""
        extra = tuple(normalize_url(u) for u in urls)
        return dataclasses.replace(self, configured=(*self.configured, *extra))

    # -- checking -------------------------------------------------------------------

    def check_channel(self, channel: str) -> str:
        """The canonical URL of ``channel`` (a name, path or URL), if it may be fetched.

        A mirrored channel passes when its mirror may be fetched: that is what is contacted.
        """
        url = self.channel_url(channel)
        self.check_url(url, shown=repr(channel))
        return url

    def check_lock(self, lock: Lock) -> None:
        """Every package URL of ``lock``, pip wheels included (each host is resolved once).

        Wheel URLs pass the gate without a namespace's ``allowed_channels``: those
        name conda channels, not package indexes.
        """
        seen_hosts: set[tuple[str, str, int | None]] = set()
        wheels = dataclasses.replace(self, narrowed_to=None)
        for platform in lock.platforms:
            for record in lock.records(platform):
                self.check_url(record.url, shown=f"package URL {record.url!r}", _hosts=seen_hosts)
            for wheel in lock.pip_records(platform):
                wheels.check_url(wheel.url, shown=f"pip package URL {wheel.url!r}")

    def check_url(
        self,
        url: str,
        *,
        shown: str | None = None,
        _hosts: set[tuple[str, str, int | None]] | None = None,
    ) -> None:
        """Raise :class:`ChannelRefused` unless ``url`` may be fetched.

        ``shown`` is how the refusal names the URL (a redirect target is not
        echoed back: it came from the remote server, not from the user).
        """
        shown = shown or repr(url)
        normal = normalize_url(url)
        # A namespace policy names canonical channels; the rules below see what is contacted.
        if self.narrowed_to is not None and not _under(normal, self.narrowed_to):
            raise ChannelRefused(
                POLICY_RULE,
                f"{shown} is not in the channels this namespace allows: "
                + (", ".join(self.narrowed_to) or "none"),
            )
        url = self.access.fetched_url(url)
        normal = normalize_url(url)
        if not self.enforce or _under(normal, self.configured):
            return
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "file":
            if parts.hostname not in (None, "", "localhost") or not self._dir_allowed(parts.path):
                raise _refused(shown)
            return
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise _refused(shown)
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError:
            raise _refused(shown) from None
        key = (scheme, parts.hostname, port)
        if _hosts is not None and key in _hosts:
            return
        if not self.host_allowed(parts.hostname, port):
            raise _refused(shown)
        if _hosts is not None:
            _hosts.add(key)

    def host_allowed(self, host: str, port: int) -> bool:
        """Whether every address ``host`` resolves to is public or in an allowed network."""
        name = _host_name(host)
        if name in self.allowed_hosts:
            return True
        addresses = _resolve(name, port)
        return bool(addresses) and all(self._address_allowed(a) for a in addresses)

    def admit(self, scheme: str, host: str, port: int, *, url: str | None = None) -> str:
        """The checked address to connect to for one request (of the gate's proxy).

        ``url`` is the whole URL when it is known (plain http); a ``CONNECT``
        tunnel knows only the host and port, so a configured channel allows its
        origin. The host is resolved once here and the connection goes to the
        address that was checked, so a second resolution cannot differ.
        """
        name = _host_name(host)
        origin = f"{scheme}://{name}:{port}"
        shown = f"a request to {origin}"
        addresses = _resolve(name, port)
        if not addresses:
            raise _refused(shown)
        if not self.enforce or name in self.allowed_hosts:
            return str(addresses[0])
        if url is not None:
            configured = _under(normalize_url(url), self.configured)
        else:
            configured = any(_origin(c) == origin for c in self.configured)
        if not configured and not all(self._address_allowed(a) for a in addresses):
            raise _refused(shown)
        return str(addresses[0])

    def _address_allowed(self, address: IPAddress | None) -> bool:
        if address is None:
            return False
        if any(address in network for network in self.allowed_networks):
            return True
        return address.is_global and not address.is_multicast

    def _dir_allowed(self, path: str) -> bool:
        try:
            target = Path(unquote(path)).resolve()
        except (OSError, RuntimeError, ValueError):
            return False
        return any(target == d or target.is_relative_to(d) for d in self.allowed_dirs)


def _host_name(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


def _resolve(name: str, port: int) -> list[IPAddress]:
    """Every address of ``name``; none when it does not resolve (refused alike, so names
    cannot be probed), or when one of them is not an IP address."""
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    addresses = [_address(str(info[4][0])) for info in infos]
    return [a for a in addresses if a is not None] if all(addresses) else []


def _origin(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        return ""
    return f"{scheme}://{_host_name(parts.hostname or '')}:{port}"


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _no_access() -> ChannelAccess:
    from condastore_core.channels.mirrors import ChannelAccess

    return ChannelAccess()


OPEN_GATE = ChannelGate(enforce=False)


def gate_for(settings: Settings) -> ChannelGate:
    """The gate a process configured by ``settings`` fetches through."""
    from condastore_core.channels.mirrors import ChannelAccess

    alias = settings.channel_alias
    custom = dict(settings.custom_channels)
    access = ChannelAccess.create(settings.channel_mirrors, settings.channel_credentials)
    networks: list[IPNetwork] = []
    hosts: list[str] = []
    for entry in settings.allowed_networks:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.append(entry.strip().lower().rstrip("."))
    dirs = []
    for directory in settings.allowed_channel_dirs:
        try:
            dirs.append(Path(directory).expanduser().resolve())
        except (OSError, RuntimeError):
            continue
    return ChannelGate(
        enforce=settings.channel_gate == "enforce",
        configured=tuple(
            normalize_url(u)
            for u in (
                alias,
                *(channel_url(c, alias, custom) for c in settings.channels),
                *custom.values(),
                *settings.channel_mirrors.values(),
            )
        ),
        allowed_dirs=tuple(dirs),
        allowed_networks=tuple(networks),
        allowed_hosts=tuple(hosts),
        channel_alias=alias,
        custom_channels=tuple(sorted(custom.items())),
        access=access,
    )
