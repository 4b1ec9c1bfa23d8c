"""The downloader's address and redirect rules (ingest/download.py), against the real local
image server (tests/imageserver.py) over real sockets.

Tests may only send traffic to this machine, so a "public" host is a test name that the
resolver stub (``download.lookup``, the module's one seam) maps to a public address, and
``local_net`` stands for the internet: a connection to that public address reaches the
local server, one to a loopback address goes through, anything else is refused before a
packet leaves (so even broken code under test sends nothing off this machine). The rule
(``address_kind``), the check of every hop and the pinned connection are the real code.
"""
from __future__ import annotations

import fnmatch
import hashlib
import io
import ipaddress
import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import unquote

import pytest

from datasette_imageclust import __version__
from datasette_imageclust.ingest import download
from datasette_imageclust.ingest.download import (CacheError, Limits, address_kind, embedded_ipv4, fetch, keep,
                                                   resolve)
from imageserver import ImageServer
from PIL import Image

LOCAL = Limits(allow_private=True, connect_timeout=2, read_timeout=2, retries=0)  # max_redirects: the default, 5
PUBLIC = Limits(connect_timeout=2, read_timeout=2, retries=0)  # no allow_private
PUBLIC_IP = "93.184.215.14"  # a global address: the test network delivers it to the local server


@pytest.fixture
def images(tux_dir) -> dict[str, bytes]:
    files = sorted((tux_dir / "fruit").glob("*.jpg"))
    return {"a.jpg": files[0].read_bytes(), "b.jpg": files[1].read_bytes()}


@pytest.fixture(scope="module")
def running_server():
    with ImageServer({}) as s:  # one for the module: stopping a server takes half a second
        yield s


@pytest.fixture
def server(running_server, images):
    """The running server, as new: these images, no request seen."""
    s = running_server
    with s.lock:
        s.images, s.requests, s.seen, s.request_headers = dict(images), [], {}, {}
    return s


@pytest.fixture
def local_net(monkeypatch, server):
    """Names -> addresses for the resolver stub, and the connections made (address, port)."""
    names: dict[str, list[str]] = {}
    connects: list[tuple[str, int]] = []
    real_lookup, real_connect = download.lookup, socket.create_connection

    def lookup(host: str) -> list[str]:
        if host in names:
            return names[host]
        try:
            ipaddress.ip_address(host)  # a literal: getaddrinfo asks no DNS server
        except ValueError:
            host.encode("idna")  # as getaddrinfo does first (a UnicodeError), then no DNS: not known
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return real_lookup(host)

    def connect(address, *args, **kwargs):
        host, port = address[:2]
        connects.append((host, port))
        if host == PUBLIC_IP:  # whatever the port (80, 443, ...): the local server
            return real_connect(("127.0.0.1", server.server_address[1]), *args, **kwargs)
        if host in ("127.0.0.1", "::1"):
            return real_connect(address, *args, **kwargs)
        raise ConnectionRefusedError(f"the test network reaches only this machine, not {host}")

    monkeypatch.setattr(download, "lookup", lookup)
    monkeypatch.setattr(socket, "create_connection", connect)
    return names, connects


def test_five_redirects_are_followed_and_a_sixth_is_refused(tmp_path, server, images):
    f = fetch(server.url("/chain/5/a.jpg"), str(tmp_path), LOCAL)
    assert (f.status, f.http_status, f.bytes, f.error) == ("ok", 200, len(images["a.jpg"]), None)
    assert server.requests == [f"/chain/{n}/a.jpg" for n in (5, 4, 3, 2, 1, 0)]
    server.requests.clear()
    f = fetch(server.url("/chain/6/a.jpg"), str(tmp_path), LOCAL)
    assert (f.status, f.http_status, f.error) == ("failed", None, "more than 5 redirects")
    # Six hops asked for, the seventh (the image) never: the limit stops before the request.
    assert server.requests == [f"/chain/{n}/a.jpg" for n in (6, 5, 4, 3, 2, 1)]


def test_the_redirect_limit_is_the_one_given(tmp_path, server):
    none = Limits(allow_private=True, connect_timeout=2, read_timeout=2, retries=0, max_redirects=0)
    assert fetch(server.url("/img/a.jpg"), str(tmp_path), none).status == "ok"
    assert fetch(server.url("/chain/1/a.jpg"), str(tmp_path), none).error == "more than 0 redirects"
    one = Limits(allow_private=True, connect_timeout=2, read_timeout=2, retries=0, max_redirects=1)
    assert fetch(server.url("/chain/1/a.jpg"), str(tmp_path), one).status == "ok"
    assert fetch(server.url("/chain/2/a.jpg"), str(tmp_path), one).error == "more than 1 redirects"


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_every_redirect_status_is_followed(tmp_path, server, code):
    f = fetch(server.url(f"/moved/{code}/a.jpg"), str(tmp_path), LOCAL)
    assert (f.status, f.http_status) == ("ok", 200)
    assert server.requests == [f"/moved/{code}/a.jpg", "/img/a.jpg"]


@pytest.mark.parametrize("path, error", [
    ("/moved/300/a.jpg", "HTTP 300 Multiple Choices"),  # a Location, but not a redirect to follow
    ("/moved/304/a.jpg", "HTTP 304 Not Modified"),
    ("/nolocation", "HTTP 302 Found"),  # a redirect with nowhere to go
    ("/moved/299/a.jpg", "HTTP 299"),  # a status without a name
])
def test_what_is_not_a_redirect_is_not_followed(tmp_path, server, path, error):
    f = fetch(server.url(path), str(tmp_path), LOCAL)
    assert (f.status, f.http_status, f.error) == ("failed", int(error.split()[1]), error)
    assert server.requests == [path]


def test_a_public_host_is_fetched_from_the_very_address_checked(tmp_path, server, local_net):
    names, connects = local_net
    names["images.example.com"] = [PUBLIC_IP]
    port = server.server_address[1]
    f = fetch(f"http://images.example.com:{port}/img/a.jpg", str(tmp_path), PUBLIC)
    assert (f.status, f.error) == ("ok", None)
    assert connects == [(PUBLIC_IP, port)] and server.requests == ["/img/a.jpg"]


@pytest.mark.parametrize("target, error", [
    ("http://127.0.0.1:{port}/img/a.jpg", "127.0.0.1 is a loopback address (--allow-private fetches it)"),
    ("http://[::1]:{port}/img/a.jpg", "::1 is a loopback address (--allow-private fetches it)"),
    ("http://internal.example.com:{port}/img/a.jpg",
     "internal.example.com resolves to 10.0.0.5, a private address (--allow-private fetches it)"),
    ("http://[2002:7f00:1::1]:{port}/img/a.jpg",
     "2002:7f00:1::1 is a loopback address (--allow-private fetches it)"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address (--allow-private fetches it)"),
])
def test_a_redirect_from_a_public_host_to_an_internal_address_is_refused_at_that_hop(
        tmp_path, server, local_net, target, error):
    names, connects = local_net
    names["images.example.com"] = [PUBLIC_IP]
    names["internal.example.com"] = ["10.0.0.5"]
    port = server.server_address[1]
    first = f"/goto?{target.format(port=port)}"
    f = fetch(f"http://images.example.com:{port}{first}", str(tmp_path), PUBLIC)
    assert (f.status, f.http_status, f.error) == ("failed", None, error)
    # The public hop was fetched; the internal one was never connected to.
    assert [unquote(r) for r in server.requests] == [first] and connects == [(PUBLIC_IP, port)]


@pytest.mark.parametrize("answers, named", [
    ([PUBLIC_IP, "127.0.0.1"], "127.0.0.1, a loopback"),
    (["10.1.2.3", PUBLIC_IP], "10.1.2.3, a private"),
    ([PUBLIC_IP, "2606:4700:4700::1111", "fd00::7"], "fd00::7, a private"),
    ([PUBLIC_IP, "::ffff:192.168.0.9"], "::ffff:192.168.0.9, a private"),
    ([PUBLIC_IP, "64:ff9b::a9fe:a9fe"], "64:ff9b::a9fe:a9fe, a link-local"),  # NAT64 of 169.254.169.254
    ([PUBLIC_IP, "fe80::1%lo"], "fe80::1%lo, a link-local"),  # a scoped address
])
def test_a_host_answering_public_and_internal_addresses_is_refused(tmp_path, server, local_net, answers, named):
    names, connects = local_net
    names["mixed.example.com"] = answers
    port = server.server_address[1]
    f = fetch(f"http://mixed.example.com:{port}/img/a.jpg", str(tmp_path), PUBLIC)
    assert (f.status, f.error) == ("failed", f"mixed.example.com resolves to {named} address "
                                             "(--allow-private fetches it)")
    assert connects == [] and server.requests == []
    # With --allow-private the same answers are fine, and the first is the one connected to.
    assert resolve("mixed.example.com", True) == answers[0]


def test_an_unknown_name_is_refused_saying_so(tmp_path, local_net):
    f = fetch("http://nosuch.example.com/a.jpg", str(tmp_path), PUBLIC)
    assert (f.status, f.error) == ("failed", "cannot resolve host 'nosuch.example.com': Name or service not known")


@pytest.mark.parametrize("address, carried, kind", [
    ("::ffff:127.0.0.1", "127.0.0.1", "a loopback"),  # IPv4-mapped
    ("::ffff:8.8.8.8", "8.8.8.8", None),
    ("2002:7f00:1::1", "127.0.0.1", "a loopback"),  # 6to4
    ("2002:a00:1::1", "10.0.0.1", "a private"),
    ("2002:a9fe:a9fe::", "169.254.169.254", "a link-local"),
    ("2002:808:808::1", "8.8.8.8", None),
    ("64:ff9b::7f00:1", "127.0.0.1", "a loopback"),  # NAT64, well-known prefix
    ("64:ff9b::c0a8:1", "192.168.0.1", "a private"),
    ("64:ff9b::808:808", "8.8.8.8", None),  # a public IPv4 host through a NAT64 gateway
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1", "a loopback"),  # Teredo, client 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1", "a private"),
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", "8.8.8.8", "a private"),  # Teredo itself is never public
    ("::7f00:1", None, "a reserved"),  # IPv4-compatible (deprecated)
    ("::", None, "an unspecified"),
    ("0.1.2.3", None, "a private"),  # "this network", but not the unspecified address
    ("2606:4700:4700::1111", None, None),
    ("8.8.8.8", None, None),
])
def test_ipv6_addresses_carrying_an_ipv4_one_are_judged_by_it(address, carried, kind):
    ip = ipaddress.ip_address(address)
    assert embedded_ipv4(ip) == (carried and ipaddress.IPv4Address(carried))
    assert address_kind(ip) == kind


def test_default_ports_the_host_header_and_what_a_request_says(tmp_path, server, local_net):
    names, connects = local_net
    names["images.example.com"] = [PUBLIC_IP]
    f = fetch("http://images.example.com/img/a.jpg", str(tmp_path), PUBLIC)
    assert (f.status, connects) == ("ok", [(PUBLIC_IP, 80)])
    sent = server.request_headers["/img/a.jpg"]
    assert (sent["Host"], sent["Accept"]) == ("images.example.com", "image/*,*/*;q=0.5")
    assert sent["User-Agent"] == f"datasette-imageclust/{__version__} (image download for research)"
    # https: port 443, over TLS (which this plain HTTP server cannot speak).
    f = fetch("https://images.example.com/img/a.jpg", str(tmp_path), PUBLIC)
    assert f.status == "failed" and f.error.startswith("TLS error: ") and connects[1:] == [(PUBLIC_IP, 443)]
    assert (f.url, f.http_status) == ("https://images.example.com/img/a.jpg", None)
    f = fetch("HTTPS://images.example.com/img/a.jpg", str(tmp_path), PUBLIC)  # a scheme is any case
    assert f.status == "failed" and f.error.startswith("TLS error: ") and connects[2:] == [(PUBLIC_IP, 443)]
    f = fetch(f"HTTP://images.example.com:{server.server_address[1]}/img/a.jpg", str(tmp_path), PUBLIC)
    assert f.status == "ok" and connects[3:] == [(PUBLIC_IP, server.server_address[1])]


def test_the_request_target_is_quoted_as_sent_by_browsers(tmp_path, server):
    f = fetch(server.url("/img/caf é.jpg?sig=a b&x=~1/2?"), str(tmp_path), LOCAL)
    assert (f.status, f.error) == ("failed", "HTTP 404 Not Found")
    assert server.requests == ["/img/caf%20%C3%A9.jpg?sig=a%20b&x=~1/2?"]
    server.requests.clear()
    assert fetch(server.base, str(tmp_path), LOCAL).error == "HTTP 404 Not Found"  # no path: "/"
    assert fetch(server.url("/img/a.jpg?v=1%2F2"), str(tmp_path), LOCAL).status == "ok"
    assert server.requests == ["/", "/img/a.jpg?v=1%2F2"]
    server.requests.clear()
    kept = "/img/x:y@z!$&'()*+,;=-._~%41.jpg"  # what a path may hold as it is (RFC 3986), escapes too
    assert fetch(server.url(kept), str(tmp_path), LOCAL).error == "HTTP 404 Not Found"
    assert server.requests == [kept]


@pytest.mark.parametrize("path", ["/img/a.jpg", "/nolength/a.jpg", "/badlength/a.jpg"])
def test_the_size_cap_is_exact_with_or_without_content_length(tmp_path, server, images, path):
    size = len(images["a.jpg"])
    at = Limits(allow_private=True, connect_timeout=2, read_timeout=2, retries=0, max_bytes=size)
    assert fetch(server.url(path), str(tmp_path), at).bytes == size
    under = Limits(allow_private=True, connect_timeout=2, read_timeout=2, retries=0, max_bytes=size - 1)
    told = path.startswith("/img/")  # the Content-Length refuses it before the body is read
    assert fetch(server.url(path), str(tmp_path), under).error == (
        f"too large: {size} bytes (the cap is {size - 1})" if told else f"too large: more than {size - 1} bytes")


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The waits fetch asks for (not waited: no test depends on the clock): a number from
    Retry-After, (low, high) for a backoff's random draw."""
    asked: list = []

    def sleep(seconds) -> None:
        if len(asked) == 10:  # no test here retries so often: a loop that never gives up
            raise RuntimeError(f"fetch keeps retrying: {asked}")
        asked.append(seconds)

    monkeypatch.setattr(download.time, "sleep", sleep)
    monkeypatch.setattr(download.random, "uniform", lambda low, high: (low, high))
    return asked


def test_retries_back_off_doubling_up_to_the_cap_and_honour_retry_after(tmp_path, server, waits):
    tries = Limits(allow_private=True, connect_timeout=2, read_timeout=2, retries=3, backoff=0.5, max_wait=1.5)
    f = fetch(server.url("/always503"), str(tmp_path), tries)
    assert (f.status, f.http_status, f.error) == ("failed", 503, "HTTP 503 Service Unavailable (after 3 retries)")
    assert waits == [(0, 0.5), (0, 1.0), (0, 1.5)] and server.seen["/always503"] == 4
    waits.clear()
    assert fetch(server.url("/r429/a.jpg"), str(tmp_path), tries).status == "ok"  # Retry-After: 1
    assert waits == [1.0] and server.seen["/r429/a.jpg"] == 2
    waits.clear()
    once = Limits(allow_private=True, connect_timeout=2, read_timeout=2, retries=0)
    assert fetch(server.url("/always503"), str(tmp_path), once).error == "HTTP 503 Service Unavailable"
    assert waits == []
    capped = Limits(allow_private=True, connect_timeout=2, read_timeout=2, retries=1, max_wait=0.25)
    assert fetch(server.url("/r429/a.jpg?again"), str(tmp_path), capped).status == "ok"
    assert waits == [0.25]


def test_a_refused_connection_is_retried_then_reported(tmp_path, waits):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tries = Limits(allow_private=True, connect_timeout=2, read_timeout=2, retries=2, backoff=0.25)
    f = fetch(f"http://127.0.0.1:{port}/a.jpg", str(tmp_path), tries)
    assert (f.status, f.http_status, f.error) == ("failed", None, "connection failed: Connection refused (after 2 retries)")
    assert waits == [(0, 0.25), (0, 0.5)]


def picture(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 60)).save(out, fmt)
    return out.getvalue()


def test_kept_images_are_named_by_their_bytes_and_format(tmp_path, server, images, monkeypatch):
    # Written through the cache's own .partial folder (one file system, so the move is atomic),
    # never the system's temporary folder: here one that does not exist.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    server.images.update({"p.png": picture("PNG"), "g.gif": picture("GIF"), "w.webp": picture("WEBP"),
                          "t.tif": picture("TIFF"), "b.bmp": picture("BMP"), "i.ico": picture("ICO")})
    cache = tmp_path / "cache"
    for name, ext in (("a.jpg", ".jpg"), ("p.png", ".png"), ("g.gif", ".gif"), ("w.webp", ".webp"),
                      ("t.tif", ".tif"), ("b.bmp", ".bmp")):
        f = fetch(server.url(f"/img/{name}"), str(cache), LOCAL)
        body = server.images[name]
        digest = hashlib.sha256(body).hexdigest()
        assert (f.status, f.http_status, f.sha256, f.bytes) == ("ok", 200, digest, len(body))
        assert f.path == str(cache / digest[:2] / (digest + ext)) and Path(f.path).read_bytes() == body
        assert f.as_row()["content_type"] == f.content_type and "path" not in f.as_row()
    f = fetch(server.url("/img/i.ico"), str(cache), LOCAL)
    assert (f.status, f.http_status, f.error) == ("failed", 200, "an image format imageclust does not load (ICO)")
    assert (f.url, f.content_type) == (server.url("/img/i.ico"), "application/octet-stream")
    f = fetch(server.url("/html"), str(cache), LOCAL)
    assert (f.status, f.http_status, f.content_type) == ("failed", 200, "text/html")
    assert f.error == "not an image (content type text/html, 65 bytes)"
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == sorted(
        hashlib.sha256(server.images[n]).hexdigest() + e for n, e in (
            ("a.jpg", ".jpg"), ("p.png", ".png"), ("g.gif", ".gif"), ("w.webp", ".webp"), ("t.tif", ".tif"),
            ("b.bmp", ".bmp")))
    assert list((cache / ".partial").iterdir()) == []


def test_a_kept_image_is_written_once_and_an_unwritable_cache_stops_the_run(tmp_path, server, images):
    cache = tmp_path / "cache"
    first = fetch(server.url("/img/a.jpg"), str(cache), LOCAL)
    os.utime(first.path, (1, 1))
    again = keep("http://elsewhere/a.jpg", images["a.jpg"], str(cache), None)
    assert (again.status, again.path, again.url, again.content_type) == ("ok", first.path, "http://elsewhere/a.jpg", None)
    assert os.stat(first.path).st_mtime == 1  # already there: not written again
    assert keep("u", b"", str(cache), None).error == "not an image (content type not given, 0 bytes)"
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    with pytest.raises(CacheError, match=r"^cannot write to the cache folder .*blocked: (Not a directory|File exists)$"):
        keep("u", images["a.jpg"], str(blocked), "image/jpeg")
    # The image's folder is on another file system (/proc, which takes no file), so the
    # partial file cannot be moved there: the error says so and the partial file is removed.
    digest = hashlib.sha256(images["b.jpg"]).hexdigest()
    (cache / digest[:2]).symlink_to("/proc")
    with pytest.raises(CacheError, match=r"^cannot write to the cache folder .*cache: Invalid cross-device link$"):
        keep("u", images["b.jpg"], str(cache), "image/jpeg")
    assert list((cache / ".partial").iterdir()) == [] and not Path("/proc", digest + ".jpg").exists()


@pytest.mark.parametrize("url, error", [
    ("http://127.0.0.1:99999/a.jpg", "not a valid URL: Port out of range 0-65535"),
    ("http://[::1/a.jpg", "not a valid URL: Invalid IPv6 URL"),
    ("/img/a.jpg", "not an absolute http(s) URL"),
    ("ftp://127.0.0.1/a.jpg", "only http and https URLs are fetched, not ftp:"),
    ("data:image/png;base64,AAAA", "only http and https URLs are fetched, not data:"),
    ("http:///a.jpg", "no host in the URL"),
    ("http://" + "a" * 64 + ".example.com/a.jpg",  # a name IDNA cannot encode (a label over 63)
     "cannot resolve host '" + "a" * 64 + ".example.com': encoding with 'idna' codec failed (UnicodeError: label *"),
])
def test_urls_refused_before_any_connection(tmp_path, local_net, url, error):
    f = fetch(url, str(tmp_path), PUBLIC)
    assert (f.status, f.http_status) == ("failed", None) and fnmatch.fnmatchcase(f.error, error)
    assert local_net[1] == []


def test_a_body_trickling_in_is_cut_off_by_the_total_timeout(tmp_path, server):
    # Each byte comes within the read timeout; the deadline on the whole response ends it.
    limits = Limits(allow_private=True, connect_timeout=2, read_timeout=1, total_timeout=1, retries=0)
    f = fetch(server.url("/tricklebody"), str(tmp_path), limits)
    assert (f.status, f.error) == ("failed", "timed out: the response took more than 1s")


def test_a_redirect_to_a_malformed_url_fails_saying_so(tmp_path, server):
    url = server.url("/goto?http://[::1/img/a.jpg")
    f = fetch(url, str(tmp_path), LOCAL)
    assert (f.url, f.status, f.http_status, f.error) == (url, "failed", None, "not a valid URL: Invalid IPv6 URL")


def test_the_body_of_an_error_is_not_read(tmp_path, server):
    # A 404 whose body is over the cap is still a 404: only a 200's body is read.
    small = Limits(allow_private=True, connect_timeout=2, read_timeout=2, retries=0, max_bytes=5)
    f = fetch(server.url("/gone404"), str(tmp_path), small)
    assert (f.status, f.http_status, f.error, f.content_type) == ("failed", 404, "HTTP 404 Not Found", "text/plain")
