"""Downloading image URLs into a content-addressed cache folder, politely and safely.

Each URL is fetched at most once per run, by at most ``concurrency`` threads in all and
``per_host`` per host; 429, 5xx and connection errors are retried after a full-jitter
backoff (or the server's ``Retry-After``, capped). Everything a URL could make us do is
bounded: only http(s), at most ``max_redirects`` hops (each checked again), connect and
read timeouts, a size cap, and no private, loopback or link-local address unless allowed
(the resolved address is checked and the connection made to that very address, so a
name cannot resolve to something else between check and use). The body must be an image
(Pillow identifies it by its bytes; the content type is only reported). Files are named
by the sha256 of their bytes: ``<cache>/<sha256[:2]>/<sha256>.<ext>``, written whole
(through ``<cache>/.partial/``, which a folder load skips as hidden) or not at all.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import email.utils
import hashlib
import http.client
import io
import ipaddress
import os
import random
import socket
import ssl
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable
from urllib.parse import quote, urljoin, urlsplit

from PIL import Image

from .. import __version__
from ..store.paths import display
from .summary import LoadError

# Pillow's format -> the extension the cached file gets (one a folder load recognises).
FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "TIFF": ".tif", "BMP": ".bmp",
                     "HEIF": ".heic", "AVIF": ".avif", "MPO": ".jpg"}
REDIRECTS = {301, 302, 303, 307, 308}
RETRY_STATUSES = {429, 500, 502, 503, 504}
USER_AGENT = f"datasette-imageclust/{__version__} (image download for research)"


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 50 * 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 30.0  # between two reads of the socket
    total_timeout: float = 300.0  # for one response, however slowly it trickles
    max_redirects: int = 5
    retries: int = 3
    backoff: float = 1.0  # the first retry waits up to this long, doubling after
    max_wait: float = 60.0  # the cap on Retry-After and backoff waits
    allow_private: bool = False


@dataclass
class Fetched:
    url: str
    status: str  # ok or failed
    http_status: int | None = None
    sha256: str | None = None
    bytes: int | None = None
    content_type: str | None = None
    error: str | None = None
    path: str | None = None  # the cached file (ok only)

    def as_row(self) -> dict:
        row = asdict(self)
        row.pop("path")
        return row


class CacheError(LoadError):
    """The cache folder cannot be written (full, read-only): the run stops, saying so."""


class Refused(Exception):
    """This URL is not fetched (scheme, address, redirects, size, content): the reason."""


class Retryable(Exception):
    """Worth another try (429, 5xx, a dropped connection); ``wait`` from Retry-After."""

    def __init__(self, reason: str, http_status: int | None = None, wait: float | None = None):
        super().__init__(reason)
        self.http_status = http_status
        self.wait = wait


def host_of(url: str) -> str:
    """The host a URL's requests count against (for ``per_host``)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def check_scheme(url: str) -> None:
    """Refuse anything but an absolute http(s) URL (no file://, data:, ftp:, ...)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as e:
        raise Refused(f"not a valid URL: {e}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise Refused(f"only http and https URLs are fetched, not {parts.scheme}:"
                      if parts.scheme else "not an absolute http(s) URL")
    if not parts.hostname:
        raise Refused("no host in the URL")


# RFC 6052's well-known NAT64 prefix: 64:ff9b::a.b.c.d is a.b.c.d, reached through a translator.
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries, and would reach through a translator or a
    tunnel: IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d), 6to4 (2002:AABB:CCDD::)
    and Teredo (the client, 2001:0::/32). None for any other address."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour:
        return ip.sixtofour
    return ip.teredo[1] if ip.teredo else None


def address_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """None for a public address, else what it is (these are refused without --allow-private).
    An IPv6 address carrying an IPv4 one (:func:`embedded_ipv4`) is judged by that address
    first: 2002:7f00:1::1 (6to4 of 127.0.0.1) is a loopback one, like ::ffff:127.0.0.1."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        kind = address_kind(inner)
        if kind or ip.ipv4_mapped or ip in NAT64:  # these two are the IPv4 address itself
            return kind
    for test, kind in (("is_loopback", "a loopback"), ("is_link_local", "a link-local"),
                       ("is_unspecified", "an unspecified"), ("is_private", "a private"),
                       ("is_multicast", "a multicast"), ("is_reserved", "a reserved")):
        if getattr(ip, test):
            return kind
    return None if ip.is_global else "a non-public"


def lookup(host: str) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order (raises socket.gaierror).
    The one seam for a test's stub resolver: tests may only reach this machine, so a test
    that a public name redirecting to an internal address is refused, or that a name mixing
    public and internal answers is, maps a test name to the addresses it needs here, while
    the rule (:func:`address_kind`) and the pinned connection stay the real code."""
    return [info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]


def resolve(host: str, allow_private: bool) -> str:
    """The address to connect to: every address ``host`` resolves to must be public
    (unless ``allow_private``), so a name cannot mix a public and an internal answer."""
    try:
        addresses = lookup(host)
    except (socket.gaierror, UnicodeError) as e:
        raise Refused(f"cannot resolve host {host!r}: {getattr(e, 'strerror', None) or e}") from None
    if not allow_private:
        for a in addresses:
            kind = address_kind(ipaddress.ip_address(a))  # a scoped fe80::1%eth0 too
            if kind:
                said = f"{a} is" if a == host else f"{host} resolves to {a},"
                raise Refused(f"{said} {kind} address (--allow-private fetches it)")
    return addresses[0]


class _Deadline:
    """A socket whose every read also ends at a deadline: a server that trickles its
    status line and headers a byte at a time (each read within the read timeout) is cut
    off like one that trickles its body. http.client reads the response through
    ``makefile``, so that is where the deadline goes."""

    def __init__(self, sock: socket.socket, deadline: float, read_timeout: float, total: float):
        self._sock, self._deadline, self._read_timeout, self._total = sock, deadline, read_timeout, total

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the response took more than {self._total:g}s")
        self._sock.settimeout(min(self._read_timeout, left))
        try:
            return self._sock.recv_into(buffer, nbytes, flags)
        except TimeoutError:
            if left < self._read_timeout:  # the deadline, not the read timeout, ran out
                raise TimeoutError(f"the response took more than {self._total:g}s") from None
            raise

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        # As socket.makefile does: the file holds a reference, so closing the connection
        # (HTTP/1.0 closes it before the body is read) leaves the socket open until the file closes.
        self._sock._io_refs += 1  # type: ignore[attr-defined]
        return io.BufferedReader(socket.SocketIO(self, "rb"))  # type: ignore[arg-type]

    def _decref_socketios(self) -> None:
        self._sock._decref_socketios()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Pinned(http.client.HTTPConnection):
    """HTTP to one checked address (the Host header still names the host), the whole
    response bounded by ``total_timeout`` from the connection on."""

    def __init__(self, host: str, port: int, address: str, limits: Limits):
        super().__init__(host, port, timeout=limits.read_timeout)
        self.address, self.connect_timeout, self.limits = address, limits.connect_timeout, limits

    def _raw(self) -> socket.socket:
        sock = socket.create_connection((self.address, self.port), self.connect_timeout)
        sock.settimeout(self.timeout)
        return sock

    def _bound(self, sock: socket.socket) -> None:
        total = self.limits.total_timeout
        self.sock = _Deadline(sock, time.monotonic() + total, self.limits.read_timeout, total)  # type: ignore

    def connect(self) -> None:
        self._bound(self._raw())


class _PinnedTLS(_Pinned):
    default_port = 443
    context = ssl.create_default_context()

    def connect(self) -> None:
        self._bound(self.context.wrap_socket(self._raw(), server_hostname=self.host))


def _retry_after(value: str | None, limits: Limits) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), limits.max_wait)


def _read_body(resp: http.client.HTTPResponse, limits: Limits) -> bytes:
    """The body, at most ``max_bytes`` (its time is bounded by the connection's
    :class:`_Deadline`, which every read of the body goes through)."""
    length = resp.getheader("Content-Length")
    if length and length.isdigit() and int(length) > limits.max_bytes:
        raise Refused(f"too large: {int(length)} bytes (the cap is {limits.max_bytes})")
    buf = io.BytesIO()
    while chunk := resp.read1(65536):
        buf.write(chunk)
        if buf.tell() > limits.max_bytes:
            raise Refused(f"too large: more than {limits.max_bytes} bytes")
    return buf.getvalue()


def _request(url: str, limits: Limits) -> tuple[int, dict, bytes, str | None]:
    """One request (no redirects followed): status, headers, body (200 only), Location."""
    check_scheme(url)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    address = resolve(parts.hostname, limits.allow_private)
    cls = _PinnedTLS if parts.scheme.lower() == "https" else _Pinned
    conn = cls(parts.hostname, port, address, limits)
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~") + (
        "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?") if parts.query else "")
    try:
        conn.request("GET", target, headers={"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.5"})
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        if resp.status in RETRY_STATUSES:
            raise Retryable(f"HTTP {resp.status} {resp.reason}", resp.status,
                            _retry_after(headers.get("retry-after"), limits))
        if resp.status in REDIRECTS and headers.get("location"):
            return resp.status, headers, b"", urljoin(url, headers["location"])
        body = _read_body(resp, limits) if resp.status == 200 else b""
        return resp.status, headers, body, None
    finally:
        conn.close()


def _attempt(url: str, limits: Limits) -> tuple[int, dict, bytes]:
    """Follow redirects (each hop checked like the first) to a final answer."""
    for _ in range(limits.max_redirects + 1):
        status, headers, body, location = _request(url, limits)
        if location is None:
            return status, headers, body
        url = location
    raise Refused(f"more than {limits.max_redirects} redirects")


def _failure(url: str, reason: str, http_status: int | None = None, content_type: str | None = None) -> Fetched:
    return Fetched(url, "failed", http_status=http_status, content_type=content_type, error=reason)


def fetch(url: str, cache: str, limits: Limits) -> Fetched:
    """Download ``url`` into ``cache`` (retrying what is worth it): a :class:`Fetched`,
    never an exception for anything the URL or its server does."""
    attempt = 0
    while True:
        try:
            status, headers, body = _attempt(url, limits)
            break
        except Refused as e:
            return _failure(url, str(e))
        except ssl.SSLError as e:  # before ValueError: a certificate error is both
            return _failure(url, f"TLS error: {e}")
        except (ValueError, UnicodeError) as e:  # http.client.InvalidURL, a name IDNA cannot encode
            return _failure(url, f"not a valid URL: {e}")
        except (Retryable, ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException,
                OSError) as e:
            reason = _reason(e)
            if attempt >= limits.retries:
                return _failure(url, reason + (f" (after {attempt} retries)" if attempt else ""),
                                getattr(e, "http_status", None))
            wait = getattr(e, "wait", None)
            attempt += 1
            time.sleep(wait if wait is not None else random.uniform(0, min(limits.max_wait,
                                                                             limits.backoff * 2 ** (attempt - 1))))
    content_type = headers.get("content-type")
    if status != 200:
        return _failure(url, f"HTTP {status} {http.client.responses.get(status, '')}".strip(), status, content_type)
    return keep(url, body, cache, content_type)


def _reason(e: Exception) -> str:
    if isinstance(e, (TimeoutError, socket.timeout)):
        return f"timed out{': ' + str(e) if str(e) and str(e) != 'timed out' else ''}"
    if isinstance(e, Retryable):
        return str(e)
    return f"connection failed: {getattr(e, 'strerror', None) or e or type(e).__name__}"


def keep(url: str, body: bytes, cache: str, content_type: str | None) -> Fetched:
    """Keep ``body`` if its bytes are an image a folder load reads."""
    try:
        with Image.open(io.BytesIO(body)) as im:
            fmt = im.format
    except Exception:
        return _failure(url, f"not an image (content type {content_type or 'not given'}, {len(body)} bytes)",
                        200, content_type)
    if fmt not in FORMAT_EXTENSIONS:
        return _failure(url, f"an image format imageclust does not load ({fmt})", 200, content_type)
    digest = hashlib.sha256(body).hexdigest()
    folder = os.path.join(cache, digest[:2])
    path = os.path.join(folder, digest + FORMAT_EXTENSIONS[fmt])
    if not os.path.exists(path):
        tmp = None
        try:
            partial = os.path.join(cache, ".partial")
            os.makedirs(partial, exist_ok=True)
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=partial)
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
            os.replace(tmp, path)  # whole or not at all
        except BaseException as e:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
            if isinstance(e, OSError):
                raise CacheError(f"cannot write to the cache folder {display(cache)}: {e.strerror or e}") from e
            raise
    return Fetched(url, "ok", 200, digest, len(body), content_type, path=path)


def download_all(urls: Iterable[str], cache: str, limits: Limits, *, concurrency: int = 8, per_host: int = 2,
                 on_result: Callable[[Fetched], None]) -> None:
    """Fetch each of ``urls`` (distinct) into ``cache``, calling ``on_result`` in this
    thread as each finishes. A host never has more than ``per_host`` requests in flight
    (its URLs wait in its own queue, so one slow host cannot take every thread)."""
    queues: dict[str, collections.deque[str]] = collections.defaultdict(collections.deque)
    for url in urls:
        try:
            check_scheme(url)  # no thread for what is refused on sight
        except Refused as e:
            on_result(_failure(url, str(e)))
            continue
        queues[host_of(url)].append(url)
    busy: collections.Counter[str] = collections.Counter()
    running: dict[cf.Future, str] = {}
    pool = cf.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="download")
    try:
        while queues or running:
            for host in list(queues):
                while queues[host] and busy[host] < per_host and len(running) < concurrency:
                    running[pool.submit(fetch, queues[host].popleft(), cache, limits)] = host
                    busy[host] += 1
                if not queues[host]:
                    del queues[host]
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in done:
                busy[running.pop(future)] -= 1
                on_result(future.result())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
