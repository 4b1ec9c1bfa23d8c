"""A faithful local stand-in for a vision-LLM server, speaking both APIs `describe` uses:

* Ollama: ``GET /api/tags``, ``POST /api/chat`` (non-streaming, base64 ``images``,
  ``format: "json"``), errors as ``{"error": "..."}`` (404 for a model not pulled);
* OpenAI-compatible: ``GET /v1/models``, ``POST /v1/chat/completions`` (content parts with
  an ``image_url`` data URL), ``Authorization: Bearer`` checked when a key is set, errors
  as ``{"error": {"message", "type", "code"}}`` (401 invalid_api_key, 404 model_not_found).

It "sees" an image by decoding what it is sent and finding the nearest image of a catalog
(a 16x16 grey signature), so its descriptions say which image and category it was shown.
Failure modes for the next chat requests are scripted (``script``): 429 with Retry-After,
500/503, slow answers (past the client's timeout), a body that is not JSON, malformed JSON
content, "together" (answer only once N requests are in flight) and "hold" (block until
released), "revoke" (401 from now on); images in ``refuse`` always get a 400. 127.0.0.1 only.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

DATA_URL = re.compile(r"^data:(image/(?:jpeg|png|webp|gif));base64,(.*)$", re.S)
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/gif": "GIF"}


def signature(data: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    return np.asarray(im.convert("L").resize((16, 16), Image.BILINEAR), np.float32).ravel()


class VLMServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, models=("llava:latest",), key: str | None = None, catalog: dict | None = None,
                 latency: float = 0.0, models_endpoint: bool = True):
        self.models = list(models)
        self.key = key
        self.latency = latency
        self.models_endpoint = models_endpoint
        self.catalog_ids: list[int] = []
        self.catalog_labels: list[str] = []
        self.catalog = np.zeros((0, 256), np.float32)
        for iid, (label, data) in (catalog or {}).items():
            self.catalog_ids.append(iid)
            self.catalog_labels.append(label)
            self.catalog = np.vstack([self.catalog, signature(data)])
        self.script: list[str] = []
        self.refuse: set[int] = set()
        self.retry_after = "1"
        self.slow_seconds = 2.0
        self.together = 2
        self.release = threading.Event()
        self.requests: list[dict] = []  # every request: method, path, headers, body
        self.chats: list[dict] = []  # every chat request: api, model, prompt, image ids/sizes, action
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.active = self.max_active = 0
        self.answered = 0  # chat requests answered with a description (200)
        super().__init__(("127.0.0.1", 0), Handler)

    # --- the test's side --------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def openai_url(self) -> str:
        return self.base + "/v1"

    def __enter__(self) -> VLMServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()

    def wait_for_chats(self, n: int, timeout: float = 30) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.chats) >= n, timeout), f"{len(self.chats)} < {n} chats"

    # --- what the "model" sees and says ---------------------------------------------------

    def identify(self, data: bytes) -> tuple[int | None, str, tuple[int, int]]:
        im = Image.open(io.BytesIO(data))
        size = im.size
        if not len(self.catalog_ids):
            return None, "something", size
        d = np.linalg.norm(self.catalog - signature(data), axis=1)
        i = int(np.argmin(d))
        if d[i] > 80:
            return None, "something", size
        return self.catalog_ids[i], self.catalog_labels[i], size

    def answer(self, seen: list[tuple[int | None, str, tuple[int, int]]], json_mode: bool, action: str) -> str:
        iid, label, _ = seen[0]
        text = f"A drawing of {label} on a plain background (catalog image {iid})."
        if action == "badjson":
            return '{"description": "unterminated' if json_mode else "   "
        if json_mode:
            return json.dumps({"description": text, "tags": [label, "Drawing", "drawing", "plain background"]})
        return text


class Handler(BaseHTTPRequestHandler):
    server: VLMServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, code: int, obj, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(obj).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout): as a real server, carry on

    def _record(self, body) -> None:
        with self.server.lock:
            self.server.requests.append({"method": self.command, "path": self.path,
                                         "headers": dict(self.headers), "body": body})

    def _openai_error(self, code: int, message: str, kind: str, err: str | None) -> None:
        self._send(code, {"error": {"message": message, "type": kind, "param": None, "code": err}})

    def _authorised(self) -> bool:
        if self.server.key is None:
            return True
        got = self.headers.get("Authorization", "")
        if got == f"Bearer {self.server.key}":
            return True
        shown = got[len("Bearer "):] if got.startswith("Bearer ") else "(none)"
        # As OpenAI does, the refusal repeats the key it was given (here: all of it).
        self._openai_error(401, f"Incorrect API key provided: {shown}.", "invalid_request_error", "invalid_api_key")
        return False

    def do_GET(self):
        srv = self.server
        self._record(None)
        if self.path == "/api/tags":
            return self._send(200, {"models": [{"name": m, "model": m, "size": 4_000_000_000,
                                                "details": {"family": "llama"}} for m in srv.models]})
        if self.path == "/v1/models" and srv.models_endpoint:
            if not self._authorised():
                return
            return self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                                 "owned_by": "local"} for m in srv.models]})
        self._send(404, {"error": "404 page not found"} if self.path.startswith("/api/")
                   else {"error": {"message": "Not Found", "type": "not_found", "code": None}})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self._record(body)
        if self.path == "/api/chat":
            return self._chat(body, "ollama")
        if self.path == "/v1/chat/completions":
            if not self._authorised():
                return
            return self._chat(body, "openai")
        self._send(404, {"error": "404 page not found"})

    # --- chat --------------------------------------------------------------------------

    def _images(self, body, api: str) -> tuple[str, list[bytes]]:
        """(prompt, image bytes) of a well-formed request; ValueError says what is wrong."""
        msgs = body.get("messages")
        if not isinstance(msgs, list) or len(msgs) != 1 or msgs[0].get("role") != "user":
            raise ValueError("expected one user message")
        if body.get("stream") is not False:
            raise ValueError("this stand-in answers non-streaming requests only: send stream: false")
        if api == "ollama":
            content, images = msgs[0].get("content"), msgs[0].get("images") or []
            if not isinstance(content, str):
                raise ValueError("content must be a string")
            try:
                return content, [base64.b64decode(i, validate=True) for i in images]
            except (binascii.Error, TypeError):
                raise ValueError("illegal base64 data in images")
        parts = msgs[0].get("content")
        if not isinstance(parts, list):
            raise ValueError("content must be a list of parts")
        texts = [p["text"] for p in parts if p.get("type") == "text"]
        out = []
        for p in parts:
            if p.get("type") == "image_url":
                m = DATA_URL.match(p["image_url"]["url"])
                if not m:
                    raise ValueError("image_url must be a data URL with a base64 image")
                data = base64.b64decode(m.group(2), validate=True)
                if Image.open(io.BytesIO(data)).format != FORMATS[m.group(1)]:
                    raise ValueError(f"the data URL says {m.group(1)} but the image is not")
                out.append(data)
        return "\n".join(texts), out

    def _chat(self, body, api: str) -> None:
        srv = self.server
        model = body.get("model") if isinstance(body, dict) else None
        if api == "ollama" and isinstance(model, str) and ":" not in model:
            model += ":latest"  # as Ollama reads a name without a tag
        if model not in srv.models:
            if api == "ollama":
                return self._send(404, {"error": f"model \"{model}\" not found, try pulling it first"})
            return self._openai_error(404, f"The model `{model}` does not exist or you do not have access to it.",
                                      "invalid_request_error", "model_not_found")
        try:
            prompt, images = self._images(body, api)
            if len(images) != 1:
                raise ValueError(f"expected 1 image, got {len(images)}")
            seen = [srv.identify(d) for d in images]
        except (ValueError, KeyError, TypeError, OSError) as e:
            return self._send(*self._error(api, 400, f"invalid request: {e}"))
        json_mode = body.get("format") == "json" if api == "ollama" else '"tags"' in prompt
        with srv.lock:
            action = srv.script.pop(0) if srv.script else "ok"
            srv.chats.append({"api": api, "model": model, "prompt": prompt, "image_id": seen[0][0],
                              "size": seen[0][2], "action": action, "json": json_mode,
                              "auth": self.headers.get("Authorization"), "t": time.monotonic()})
            srv.active += 1
            srv.max_active = max(srv.max_active, srv.active)
            srv.changed.notify_all()
            if action == "together":
                srv.changed.wait_for(lambda: srv.active >= srv.together, timeout=20)
        try:
            reply = self._reply(srv, api, model, seen, json_mode, action)
        finally:
            with srv.lock:  # before answering: the client may send its next request at once
                srv.active -= 1
                srv.changed.notify_all()
        self._send(*reply)

    def _reply(self, srv: VLMServer, api: str, model: str, seen: list, json_mode: bool, action: str) -> tuple:
        """(status, JSON, headers, raw body) of the answer, after the scripted delay."""
        if action == "hold":
            srv.release.wait(60)
        if srv.latency:
            time.sleep(srv.latency)
        if seen[0][0] in srv.refuse:
            return self._error(api, 400, "this image cannot be processed")
        if action in ("500", "503"):
            return self._error(api, int(action), "the model runner is overloaded")
        if action == "429":
            return self._error(api, 429, "rate limit reached", {"Retry-After": srv.retry_after})
        if action == "slow":
            time.sleep(srv.slow_seconds)
        if action == "badbody":
            return 200, None, None, b"<html>502 Bad Gateway</html>"
        if action == "revoke":  # the key is revoked from now on
            srv.key = "revoked"
            return 401, {"error": {"message": "The API key was revoked.", "type": "invalid_request_error",
                                   "param": None, "code": "invalid_api_key"}}
        text = srv.answer(seen, json_mode, action)
        with srv.lock:
            srv.answered += 1
        if api == "ollama":
            return 200, {"model": model, "created_at": "2025-01-01T00:00:00Z",
                         "message": {"role": "assistant", "content": text}, "done_reason": "stop",
                         "done": True, "total_duration": 1, "eval_count": 20}
        return 200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    @staticmethod
    def _error(api: str, code: int, message: str, headers: dict | None = None) -> tuple:
        if api == "ollama":
            return code, {"error": message}, headers
        kind = {400: "invalid_request_error", 429: "rate_limit_exceeded"}.get(code, "server_error")
        return code, {"error": {"message": message, "type": kind, "param": None, "code": None}}, headers
