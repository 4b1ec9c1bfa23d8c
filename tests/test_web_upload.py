"""Search by upload under hostile input: what one upload may cost is bounded, and the
server keeps answering everyone else. In-process checks of each limit, then a real
`datasette` server: responsiveness during a hostile upload, peak memory after four
large uploads at once, 429 when every upload slot is taken."""
from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import datasette_server
from datasette_imageclust.web import upload
from test_plugin_pages import make_ds

BOUNDARY = "ic-test-boundary-7f3a"
RESPONSIVE_SECONDS = 2.0  # an unrelated request during a hostile upload (it took 15-30 s before)
PEAK_MB = 700             # server memory growth over 4 + 4 large uploads (3.7 GB before)


def _part(name: str, data: bytes, filename: str | None = None, ctype: str = "application/octet-stream") -> bytes:
    disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disp}\r\n"
    if filename:
        head += f"Content-Type: {ctype}\r\n"
    return head.encode() + b"\r\n" + data + b"\r\n"


def _body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.fixture(scope="module")
def photos(tux_db, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("upload") / "photos.db"
    shutil.copy(tux_db, path)
    return str(path)


@pytest.fixture(scope="module")
def sample(tux_dir) -> bytes:
    return sorted((tux_dir / "birds").iterdir())[0].read_bytes()


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> bytes:
    """9000 x 9000 RGB (81 Mpx, under Pillow's 89.5 Mpx limit): ~250 KB on the wire."""
    buf = io.BytesIO()
    Image.new("RGB", (9000, 9000), (20, 40, 60)).save(buf, "PNG", compress_level=9)
    return buf.getvalue()


@pytest.fixture(scope="module")
def big_png() -> bytes:
    """4000 x 3900 (15.6 Mpx): just under the upload limit, so it is really decoded."""
    y, x = np.mgrid[0:3900, 0:4000]
    arr = np.stack([(x + y) % 256, (x // 16) % 256, (y // 16) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=1)
    assert len(buf.getvalue()) < upload.MAX_BYTES
    return buf.getvalue()


# --- in-process: each limit ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_too_many_parts_refused(photos, sample):
    ds = make_ds([photos])
    tiny = b"".join(_part(f"f{i}", b"x") for i in range(30_000))
    r = await ds.client.post("/photos/-/imageclust/search.json", content=_body(tiny, _part("image", sample, "a.jpg")),
                             headers=HEADERS)
    assert r.status_code == 400 and "too many form fields" in r.json()["error"]


@pytest.mark.asyncio
async def test_a_few_fields_before_the_image_and_nothing_read_after_it(photos, sample):
    ds = make_ds([photos])
    fields = b"".join(_part(f"f{i}", b"hello") for i in range(upload.MAX_PARTS - 1))
    # Anything after the image field is never parsed: here, not even multipart.
    body = fields + _part("image", sample, "a.jpg") + b"--" + BOUNDARY.encode() + b"\r\n\x00garbage" * 1000
    r = await ds.client.post("/photos/-/imageclust/search.json?k=3", content=body, headers=HEADERS)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["mode"] == "upload" and len(r.json()["results"]) == 3


@pytest.mark.asyncio
async def test_bad_bodies_are_400(photos, sample):
    ds = make_ds([photos])
    long_header = f"--{BOUNDARY}\r\nX-Pad: {'a' * 100_000}\r\n\r\nx\r\n".encode()
    many_headers = (f"--{BOUNDARY}\r\n" + "X-A: b\r\n" * 50 + "\r\nx\r\n").encode()
    for body, headers, words in [
        # (Recent python-multipart versions enforce header limits themselves, more tightly.)
        (_body(long_header, _part("image", sample, "a.jpg")), HEADERS, "header"),
        (_body(many_headers, _part("image", sample, "a.jpg")), HEADERS, "header"),
        (_body(_part("image", sample, "a.jpg"))[:500], HEADERS, "no complete form field"),
        (b"not multipart at all", HEADERS, "malformed multipart body"),
        (_body(_part("image", sample, "a.jpg")), {"content-type": "multipart/form-data"}, "multipart/form-data"),
        (_body(_part("image", b"", "a.jpg")), HEADERS, "empty"),
    ]:
        r = await ds.client.post("/photos/-/imageclust/search.json", content=body, headers=headers)
        assert r.status_code == 400 and words in r.json()["error"].lower(), (words, r.status_code, r.text[:300])


@pytest.mark.asyncio
async def test_pixel_limit_from_the_header_and_reduced_jpeg_decoding(photos, huge_png, tmp_path):
    ds = make_ds([photos])
    r = await ds.client.post("/photos/-/imageclust/search.json", headers=HEADERS,
                             content=_body(_part("image", huge_png, "huge.png", "image/png")))
    assert r.status_code == 413 and "9000x9000" in r.json()["error"] and "megapixels" in r.json()["error"]
    # A JPEG over the limit is decoded at 1/8 scale (draft), so it is searched with.
    buf = io.BytesIO()
    Image.new("RGB", (6000, 5000), (200, 30, 30)).save(buf, "JPEG", quality=50)
    r = await ds.client.post("/photos/-/imageclust/search.json?k=2", headers=HEADERS,
                             content=_body(_part("image", buf.getvalue(), "big.jpg", "image/jpeg")))
    assert r.status_code == 200 and r.json()["upload"]["width"] == 6000, r.text[:300]


# --- a real server ---------------------------------------------------------------------------


def _pid_of(base: str) -> int:
    """The `datasette` process serving ``base`` (its command line names the port)."""
    port = base.rsplit(":", 1)[1]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"datasette" in args and port.encode() in args:
            return int(pid)
    raise AssertionError(f"no datasette process on port {port}")


def _vm(pid: int, key: str) -> int:
    """VmHWM / VmRSS of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    raise AssertionError(key)


def _post(base: str, body: bytes, timeout: float = 120) -> int:
    req = urllib.request.Request(base + "/photos/-/imageclust/search.json?k=3", data=body, headers=HEADERS)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _versions_seconds(base: str) -> float:
    t = time.perf_counter()
    with urllib.request.urlopen(base + "/-/versions.json", timeout=120) as r:
        assert r.status == 200
    return time.perf_counter() - t


def _send_raw(base: str, body: bytes, length: int | None = None) -> socket.socket:
    """Open a connection and send an upload's headers and ``body`` (maybe not all of it)."""
    host, port = base.split("//")[1].split(":")
    s = socket.create_connection((host, int(port)), timeout=120)
    head = (f"POST /photos/-/imageclust/search.json HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: {HEADERS['content-type']}\r\nContent-Length: {length or len(body)}\r\n\r\n")
    s.sendall(head.encode() + body)
    return s


def _status(s: socket.socket) -> int:
    return int(s.recv(100).split(b" ")[1])


def test_server_answers_others_during_hostile_uploads(photos, sample, huge_png):
    tiny = b"".join(_part(f"f{i}", b"x") for i in range(30_000))
    hostile = {"30,000 parts": _body(tiny, _part("image", sample, "a.jpg")),
               "a 9000x9000 PNG": _body(_part("image", huge_png, "huge.png", "image/png"))}
    with datasette_server(photos) as base:
        assert _post(base, _body(_part("image", sample, "a.jpg"))) == 200  # loads the model
        for name, body in hostile.items():
            s = _send_raw(base, body)  # the whole body is on its way when we ask
            try:
                took = _versions_seconds(base)
                assert took < RESPONSIVE_SECONDS, f"/-/versions.json took {took:.1f}s during {name}"
                assert _status(s) in (400, 413), name
            finally:
                s.close()


def test_peak_memory_after_concurrent_large_uploads(photos, sample, huge_png, big_png):
    with datasette_server(photos) as base:
        pid = _pid_of(base)
        assert _post(base, _body(_part("image", sample, "a.jpg"))) == 200  # the model is loaded
        before = _vm(pid, "VmHWM")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            huge = list(pool.map(lambda _: _post(base, _body(_part("image", huge_png, "h.png", "image/png"))),
                                 range(4)))
            big = list(pool.map(lambda _: _post(base, _body(_part("image", big_png, "b.png", "image/png"))),
                                range(4)))
        grown = _vm(pid, "VmHWM") - before
        print(f"peak memory: {before} MB after one upload, +{grown} MB after 4 + 4 large uploads")
        assert huge == [413] * 4 and big == [200] * 4, (huge, big)
        assert grown < PEAK_MB, f"the server's peak memory grew by {grown} MB"


def test_busy_server_answers_429_and_frees_slots(photos, sample):
    body = _body(_part("image", sample, "a.jpg"))
    with datasette_server(photos) as base:
        assert _post(base, body) == 200
        # Uploads that never finish hold every slot...
        held = [_send_raw(base, body[:200], length=len(body)) for _ in range(upload.UPLOAD_SLOTS)]
        try:
            time.sleep(0.5)
            t = time.perf_counter()
            s = _send_raw(base, body)
            reply = s.recv(4096)
            s.close()
            assert int(reply.split(b" ")[1]) == 429 and b"retry-after: 5" in reply.lower(), reply[:300]
            assert time.perf_counter() - t < upload.SLOT_WAIT + 5
        finally:
            for h in held:
                h.close()
        # ...and are given back when those clients go away.
        deadline = time.monotonic() + 30
        while _post(base, body) != 200:
            assert time.monotonic() < deadline, "upload slots were not freed"
            time.sleep(0.2)


@pytest.mark.asyncio
async def test_a_body_too_slow_to_arrive_gets_408_and_frees_its_slot(photos, sample, monkeypatch):
    monkeypatch.setattr(upload, "READ_SECONDS", 0.5)
    ds = make_ds([photos])
    body = _body(_part("image", sample, "a.jpg"))
    sent: list = []

    async def receive():  # the first 100 bytes, then nothing more for a long while
        if not sent:
            sent.append(1)
            return {"type": "http.request", "body": body[:100], "more_body": True}
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "http_version": "1.1", "method": "POST", "scheme": "http", "root_path": "",
             "path": "/photos/-/imageclust/search.json", "raw_path": b"/photos/-/imageclust/search.json",
             "query_string": b"", "server": ("localhost", 80), "client": ("127.0.0.1", 1),
             "headers": [(b"host", b"localhost"), (b"content-type", HEADERS["content-type"].encode()),
                         (b"content-length", str(len(body)).encode())]}
    await asyncio.wait_for(ds.app()(scope, receive, send), 20)
    start = next(m for m in sent if isinstance(m, dict) and m["type"] == "http.response.start")
    assert start["status"] == 408
    assert upload.in_progress() == 0
    r = await ds.client.post("/photos/-/imageclust/search.json?k=2", content=body, headers=HEADERS)
    assert r.status_code == 200
