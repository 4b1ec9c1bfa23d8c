"""A faithful local image host for `load --from`: real images over a real socket, and the
ways real hosts misbehave, chosen by the path:

    /img/NAME          the image (Content-Type by its format)
    /redirect/NAME     302 to /img/NAME
    /chain/N/NAME      302 to /chain/N-1/NAME, /chain/0/NAME the image: N redirects, then the image
    /moved/CODE/NAME   status CODE (301, 307, 300, ...) with Location: /img/NAME
    /nolocation        302 without a Location header
    /nolength/NAME     the image without Content-Length (the close ends it)
    /badlength/NAME    the image with "Content-Length: unknown" (the close ends it)
    /goto?URL          302 to URL, whatever it is (another host, an internal address)
    /wrongtype/NAME    the image, sent as text/plain (accepted by its bytes)
    /r429/NAME         429 with Retry-After: 1 the first time, then the image
    /r503/NAME         503 the first time, then the image
    /slowok/NAME       the image after `slow_ok` seconds (for interrupting a run)
    /always503         503 every time
    /html              an HTML page with 200 (not an image)
    /gone404, /gone410 404 Not Found, 410 Gone
    /slow              headers, a few bytes, then silence for `slow_seconds` (a read timeout)
    /loop              302 -> /loop2 -> /loop ... (a redirect loop)
    /tofile            302 to file:///etc/passwd (a redirect out of http)
    /endless           200 without Content-Length, bytes until the client hangs up
    /tricklebody       headers, then the body a byte every 0.2 s, for at most 30 s
    /trickle           a status line and headers a byte every 0.2 s (each read within any read
                       timeout), for at most 30 s: only a deadline on the whole response ends it

Every request is counted in ``requests`` (path list), so a test can assert that a re-run
sends none; ``request_headers`` keeps the headers of the last request to each path. Binds 127.0.0.1 only.
"""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif"}


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, images: dict[str, bytes]):
        self.images = images
        self.requests: list[str] = []
        self.seen: dict[str, int] = {}
        self.request_headers: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()
        self.slow_seconds = 5.0
        self.slow_ok = 0.0
        self.active = self.max_active = 0  # requests in flight, and the most at once
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> ImageServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()

    def count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(p.startswith(prefix) for p in self.requests)


class Handler(BaseHTTPRequestHandler):
    server: ImageServer
    protocol_version = "HTTP/1.0"  # one request per connection; the end of a body is the close

    def log_message(self, *a):
        pass

    def _send(self, code: int, body: bytes = b"", ctype: str = "text/plain", headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _image(self, name: str, ctype: str | None = None) -> None:
        data = self.server.images.get(name)
        if data is None:
            return self._send(404, b"no such image")
        self._send(200, data, ctype or TYPES.get(name[name.rfind("."):], "application/octet-stream"))

    def do_GET(self) -> None:
        path = self.path
        with self.server.lock:
            self.server.requests.append(path)
            nth = self.server.seen[path] = self.server.seen.get(path, 0) + 1
            self.server.request_headers[path] = dict(self.headers.items())
            self.server.active += 1
            self.server.max_active = max(self.server.max_active, self.server.active)
        # A query string is part of the URL (CDNs sign theirs), not of the image's name.
        kind, _, name = path.split("?", 1)[0].lstrip("/").partition("/")
        counted = True
        try:
            if kind == "img":
                self._image(name)
            elif kind == "redirect":
                self._send(302, headers={"Location": f"/img/{name}"})
            elif kind == "chain":
                n, _, name = name.partition("/")
                hop = {"Location": f"/chain/{int(n) - 1}/{name}"}
                self._image(name) if n == "0" else self._send(302, headers=hop)
            elif kind == "moved":
                code, _, name = name.partition("/")
                self._send(int(code), headers={"Location": f"/img/{name}"})
            elif kind in ("nolength", "badlength"):
                self.send_response(200)
                if kind == "badlength":
                    self.send_header("Content-Length", "unknown")
                self.end_headers()
                self.wfile.write(self.server.images[name])
            elif kind == "nolocation":
                self._send(302, b"moved, but where?")
            elif kind == "goto":
                self._send(302, headers={"Location": unquote(path.partition("?")[2])})
            elif kind == "wrongtype":
                self._image(name, "text/plain")
            elif kind == "r429":
                self._send(429, b"slow down", headers={"Retry-After": "1"}) if nth == 1 else self._image(name)
            elif kind == "r503":
                self._send(503, b"busy") if nth == 1 else self._image(name)
            elif kind == "slowok":
                time.sleep(self.server.slow_ok)
                # No longer "in flight" once the answer is ready: counted after the client has
                # read it, the client's next request could overlap this one's bookkeeping.
                with self.server.lock:
                    self.server.active -= 1
                    counted = False
                self._image(name)
            elif kind == "always503":
                self._send(503, b"busy")
            elif kind == "html":
                self._send(200, b"<!doctype html><html><body>Log in to see this image</body></html>", "text/html")
            elif kind == "gone404":
                self._send(404, b"not found")
            elif kind == "gone410":
                self._send(410, b"gone")
            elif kind == "slow":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.write(b"\xff\xd8\xff")
                self.wfile.flush()
                time.sleep(self.server.slow_seconds)
            elif kind == "tofile":
                self._send(302, headers={"Location": "file:///etc/passwd"})
            elif kind == "trickle":
                head = b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nX-Padding: " + b"a" * 200
                for byte in head:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            elif kind == "tricklebody":
                self.send_response(200)
                self.send_header("Content-Length", "150")
                self.end_headers()
                for _ in range(150):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            elif kind in ("loop", "loop2"):
                self._send(302, headers={"Location": "/loop2" if kind == "loop" else "/loop"})
            elif kind == "endless":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.end_headers()
                chunk = b"\xff\xd8\xff" + bytes(65533)
                while True:
                    self.wfile.write(chunk)
            else:
                self._send(404, b"unknown path")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass  # the client gave up (a timeout, a size cap): as a real server, carry on
        finally:
            if counted:
                with self.server.lock:
                    self.server.active -= 1
