"""A faithful local stand-in for the Hugging Face Hub's file endpoints.

Serves ``/{owner}/{repo}/resolve/{revision}/{path}`` from a model directory with the
headers ``huggingface_hub`` reads (X-Repo-Commit, ETag, X-Linked-Size, Content-Length),
and 404 + ``X-Error-Code: EntryNotFound`` for missing files, and the file listing
``/api/models/{owner}/{repo}/tree/{revision}?recursive=...`` (one page, as the Hub's JSON),
on 127.0.0.1 only.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repo_id: str, folder: Path):
        self.repo_id, self.folder = repo_id, Path(folder)
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def _file(self):
                hub.requests.append((self.command, self.path))
                m = re.match(r"^/(.+?)/resolve/([^/]+)/(.+)$", self.path.split("?")[0])
                if not m or m.group(1) != hub.repo_id:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.end_headers()
                    return None
                f = hub.folder / m.group(3)
                if not f.is_file():
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.end_headers()
                    return None
                data = f.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"%s"' % hashlib.sha256(data).hexdigest())
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                return data

            def do_HEAD(self):
                self._file()

            def _tree(self) -> bool:
                m = re.match(r"^/api/models/(.+?)/tree/([^/?]+)", self.path)
                if not m:
                    return False
                hub.requests.append((self.command, self.path))
                if m.group(1) != hub.repo_id:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.end_headers()
                    return True
                entries = []
                for f in sorted(hub.folder.rglob("*")):
                    rel = f.relative_to(hub.folder).as_posix()
                    oid = hashlib.sha1(rel.encode()).hexdigest()
                    entries.append({"type": "file", "path": rel, "size": f.stat().st_size, "oid": oid}
                                   if f.is_file() else {"type": "directory", "path": rel, "oid": oid})
                body = json.dumps(entries).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return True

            def do_GET(self):
                if self._tree():
                    return
                data = self._file()
                if data is not None:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
