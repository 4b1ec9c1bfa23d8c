"""Vision-LLM clients: Ollama's API and the OpenAI-compatible chat-completions API behind
one interface (:class:`Client`: ``preflight()``, ``ask(prompt, images)``).

What both share lives here once: the HTTP round trip (urllib, JSON bodies), timeouts,
retries with exponential backoff and full jitter on 408/429/5xx, timeouts, malformed
answers and dropped connections (a ``Retry-After`` header is honoured), and the sorting of
failures into three kinds:

* :class:`ServerError` - the server cannot be used at all (unreachable, a refused API key,
  an unknown model): one line for the user, and the step stops;
* :class:`Refused` - the server refused this request (HTTP 400, 413, 422...): not retried,
  the caller records it and goes on;
* :class:`TransientError` - a failure that outlived its retries: the caller records it.

The API key comes from the environment only (:func:`api_key_from_env`): never from an
argument a user types, never stored, and blanked out of every message.
"""
from __future__ import annotations

import base64
import email.utils
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from time import perf_counter  # apart from `time`, which tests replace to record the waits
from typing import Any, Callable, ClassVar

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
APIS = ("ollama", "openai")
#: Where the API key is read from, in order; Ollama only reads the first (a key meant for
#: OpenAI is never sent to an Ollama server).
KEY_VARIABLES = ("IMAGECLUST_API_KEY", "OPENAI_API_KEY")
MAX_RETRY_AFTER = 120.0  # a server asking for a longer pause is waited for this long at most
PREFLIGHT_TIMEOUT = 30.0


class ServerError(Exception):
    """The server cannot be used at all (unreachable, key refused, unknown model)."""


class Refused(Exception):
    """The server refused this request (not retried); the message is the reason."""


class TransientError(Exception):
    """One failed attempt that may succeed if repeated (and, after the last retry, the
    reason the request failed)."""

    def __init__(self, reason: str, *, retry_after: float | None = None, connection: bool = False,
                 timed_out: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after  # seconds the server asked us to wait
        self.connection = connection  # the server could not be reached at all
        self.timed_out = timed_out


class Cancelled(Exception):
    """The caller asked the client to stop (its ``cancel`` event is set)."""


class HTTPStatus(Exception):
    """An HTTP error answer, before the caller decides what it means."""

    def __init__(self, code: int, detail: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {code}: {detail}")
        self.code, self.detail, self.retry_after = code, detail, retry_after


@dataclass
class Image:
    data: bytes
    media_type: str = "image/jpeg"

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


@dataclass
class Answer:
    value: Any  # what the caller's ``parse`` made of the model's text
    seconds: float  # the successful attempt's round trip


def api_key_from_env(api: str) -> tuple[str | None, str | None]:
    """(key, the variable it came from) for ``api``; (None, None) when none is set."""
    names = KEY_VARIABLES if api == "openai" else KEY_VARIABLES[:1]
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value, name
    return None, None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def one_line(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit]


def error_detail(raw: bytes) -> str:
    """The message of an error body: Ollama's {"error": "..."}, OpenAI's {"error":
    {"message": ...}}, else the text itself."""
    text = raw.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
    except ValueError:
        return one_line(text) or "(no message)"
    err = obj.get("error", obj) if isinstance(obj, dict) else obj
    if isinstance(err, dict):
        err = err.get("message") or err
    return one_line(err if isinstance(err, str) else json.dumps(err)) or "(no message)"


class Client:
    """One model on one server. ``ask`` retries transient failures ``retries`` times,
    waiting a random time in [0, backoff * 2**(attempt-1)] (full jitter) or, when longer,
    what the server's Retry-After asks; ``cancel`` (an event) stops between attempts."""

    api: ClassVar[str] = ""
    name: ClassVar[str] = ""

    def __init__(self, url: str, model: str, *, timeout: float = 120.0, retries: int = 3, backoff: float = 1.0,
                 api_key: str | None = None, key_variable: str | None = None, url_option: str = "--url",
                 cancel: threading.Event | None = None) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.api_key, self.key_variable = api_key, key_variable
        self.url_option = url_option  # named in messages: the option that changes the URL
        self.cancel = cancel

    # --- the interface ----------------------------------------------------------------

    def preflight(self) -> None:
        """Check the server, the key and the model with one cheap request; raises
        :class:`ServerError` with the one message for the user."""
        raise NotImplementedError

    def ask(self, prompt: str, images: list[Image], *, json_mode: bool = False,
            parse: Callable[[str], Any] = lambda text: text) -> Answer:
        """The model's answer to ``prompt`` about ``images``, through ``parse`` (which
        raises :class:`TransientError` for an answer to ask again, e.g. malformed JSON)."""
        raise NotImplementedError

    # --- shared machinery -------------------------------------------------------------

    def redact(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text

    def call(self, method: str, path: str, body: Any = None, *, timeout: float | None = None) -> tuple[Any, float]:
        """One HTTP round trip: (the JSON answer, seconds). Raises :class:`HTTPStatus` for
        an error status, :class:`TransientError` for a timeout, a dropped connection or
        a body that is not JSON."""
        timeout = timeout or self.timeout
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        start = perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            try:
                said = e.read(4000)
            except (http.client.HTTPException, OSError):  # the error body itself was cut short
                said = b""
            detail = self.redact(error_detail(said))
            raise HTTPStatus(e.code, detail, parse_retry_after(e.headers.get("Retry-After"))) from None
        except (socket.timeout, TimeoutError):
            raise TransientError(f"no answer within {timeout:g}s", timed_out=True) from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise TransientError(f"no answer within {timeout:g}s", timed_out=True) from None
            raise TransientError(f"connection failed: {e.reason}", connection=True) from None
        except (http.client.HTTPException, OSError) as e:  # reset, dropped mid-answer
            raise TransientError(f"connection failed: {type(e).__name__}: {e}", connection=True) from None
        seconds = perf_counter() - start
        try:
            return json.loads(raw), seconds
        except ValueError:
            raise TransientError(f"the server's answer is not JSON: {self.redact(repr(raw[:120]))}") from None

    def post(self, path: str, body: dict, extract: Callable[[Any], Any]) -> Answer:
        """POST with retries; ``extract`` turns the JSON answer into the value (raising
        TransientError for a malformed one, Refused for a refusal)."""
        last: TransientError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._wait(attempt, last)
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled()
            try:
                reply, seconds = self.call("POST", path, body)
                return Answer(extract(reply), seconds)
            except HTTPStatus as e:
                last = self._classify(e)
            except TransientError as e:
                last = e
        assert last is not None
        if last.connection:  # never reached, or lost: nothing more will work
            raise ServerError(self.unreachable(str(last)))
        raise TransientError(f"gave up after {self.retries + 1} attempts: {last}")

    def _wait(self, attempt: int, last: TransientError | None) -> None:
        wait = random.uniform(0, self.backoff * 2 ** (attempt - 1))
        if last is not None and last.retry_after is not None:
            wait = max(wait, min(last.retry_after, MAX_RETRY_AFTER))
        if self.cancel is None:
            time.sleep(wait)
        elif self.cancel.wait(wait):
            raise Cancelled()

    def _classify(self, e: HTTPStatus) -> TransientError:
        """An error status during the work: fatal (raised), refused (raised) or retried."""
        if e.code in (401, 403):
            raise ServerError(self.key_refused(e))
        if e.code == 404:
            raise ServerError(self.not_found(e))
        if e.code in (408, 425, 429) or e.code >= 500:
            return TransientError(str(e), retry_after=e.retry_after)
        raise Refused(str(e))

    def get_for_preflight(self, path: str) -> tuple[Any | None, HTTPStatus | None]:
        """One GET for a preflight: (answer, None) or (None, the error status). A server
        that cannot be reached or does not answer in time is a :class:`ServerError`."""
        try:
            return self.call("GET", path, timeout=min(self.timeout, PREFLIGHT_TIMEOUT))[0], None
        except HTTPStatus as e:
            if e.code in (401, 403):
                raise ServerError(self.key_refused(e)) from None
            return None, e
        except TransientError as e:
            if e.connection:
                raise ServerError(self.unreachable(str(e))) from None
            if e.timed_out:
                raise ServerError(f"{self.name} at {self.url} did not answer GET {path}: {e}") from None
            return None, None  # an answer we cannot read: the first request will tell

    # --- messages ---------------------------------------------------------------------

    def unreachable(self, reason: str) -> str:
        return f"cannot reach {self.name} at {self.url} ({reason}) ({self.url_option} to change)"

    def key_refused(self, e: HTTPStatus) -> str:
        if self.api_key:
            return (f"{self.url} refused the API key from {self.key_variable} ({e}): check the key")
        wanted = " or ".join(KEY_VARIABLES if self.api == "openai" else KEY_VARIABLES[:1])
        return f"{self.url} wants an API key ({e}): set {wanted} in the environment"

    def not_found(self, e: HTTPStatus) -> str:
        return f"{self.name} at {self.url} has no model {self.model!r} ({e.detail})"


class OllamaClient(Client):
    """Ollama's native API: ``POST /api/chat`` (``/api/generate`` for cluster labels)
    with base64 images and ``stream: false``; ``format: "json"`` in JSON mode."""

    api = "ollama"
    name = "Ollama"

    def preflight(self) -> None:
        reply, status = self.get_for_preflight("/api/tags")
        if status is not None and status.code == 404:
            raise ServerError(f"{self.url} is not an Ollama server (GET /api/tags: {status}): for an "
                              f"OpenAI-compatible server use --api openai")
        models = reply.get("models") if isinstance(reply, dict) else None
        if not isinstance(models, list):
            return  # cannot tell (a proxy, say): the first request will
        names = {m.get(k) for m in models if isinstance(m, dict) for k in ("name", "model")}
        if self.model not in names and f"{self.model}:latest" not in names:
            have = ", ".join(sorted(n for n in names if isinstance(n, str))[:10]) or "none"
            raise ServerError(f"Ollama at {self.url} has no model {self.model!r} (it has: {have}): "
                              f"run `ollama pull {self.model}`")

    def ask(self, prompt: str, images: list[Image], *, json_mode: bool = False,
            parse: Callable[[str], Any] = lambda text: text) -> Answer:
        body: dict[str, Any] = {"model": self.model, "stream": False, "messages": [
            {"role": "user", "content": prompt, "images": [i.base64() for i in images]}]}
        if json_mode:
            body["format"] = "json"

        def extract(reply: Any) -> Any:
            try:
                content = reply["message"]["content"]
            except (KeyError, TypeError):
                raise TransientError(f"unexpected answer from Ollama: {one_line(json.dumps(reply), 120)}") from None
            if not isinstance(content, str):
                raise TransientError("unexpected answer from Ollama: no text content")
            return parse(content)

        return self.post("/api/chat", body, extract)

    def generate(self, prompt: str, images: list[Image], extract: Callable[[Any], Any]) -> Answer:
        """``/api/generate`` in JSON mode (what cluster labels use)."""
        body = {"model": self.model, "prompt": prompt, "format": "json", "stream": False,
                "images": [i.base64() for i in images]}
        return self.post("/api/generate", body, extract)

    def not_found(self, e: HTTPStatus) -> str:
        return f"{self.url} has no model {self.model!r} ({e.detail}): run `ollama pull {self.model}`"

    def unreachable(self, reason: str) -> str:
        return (f"cannot reach Ollama at {self.url} ({reason}): is `ollama serve` running? "
                f"({self.url_option} to change)")


class OpenAIClient(Client):
    """The OpenAI-compatible chat-completions API (OpenAI, vLLM, llama.cpp's server, LM
    Studio, hosted services): ``POST {url}/chat/completions`` with the image as a data URL."""

    api = "openai"
    name = "the OpenAI-compatible server"

    def preflight(self) -> None:
        reply, _ = self.get_for_preflight("/models")  # some servers lack it: then the first request tells
        data = reply.get("data") if isinstance(reply, dict) else None
        if not isinstance(data, list) or not data:
            return
        ids = sorted({m.get("id") for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)})
        if ids and self.model not in ids:
            raise ServerError(f"{self.url} has no model {self.model!r} (it lists: {', '.join(ids[:10])}"
                              + (", ..." if len(ids) > 10 else "") + ")")

    def ask(self, prompt: str, images: list[Image], *, json_mode: bool = False,
            parse: Callable[[str], Any] = lambda text: text) -> Answer:
        # JSON mode is asked for in the prompt only: `response_format` is not understood
        # alike by every compatible server, and a malformed answer is retried anyway.
        content: list[dict] = [{"type": "text", "text": prompt}]
        content += [{"type": "image_url", "image_url": {"url": f"data:{i.media_type};base64,{i.base64()}"}}
                    for i in images]
        body = {"model": self.model, "stream": False, "messages": [{"role": "user", "content": content}]}

        def extract(reply: Any) -> Any:
            try:
                choice = reply["choices"][0]
                message = choice["message"]
            except (KeyError, IndexError, TypeError):
                raise TransientError(f"unexpected answer: {one_line(json.dumps(reply), 120)}") from None
            text = message.get("content") if isinstance(message, dict) else None
            if isinstance(text, list):  # content parts
                text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
            if not isinstance(text, str) or not text.strip():
                refusal = message.get("refusal") if isinstance(message, dict) else None
                if refusal or choice.get("finish_reason") == "content_filter":
                    raise Refused(f"the model declined: {one_line(str(refusal or 'content filter'))}")
                raise TransientError("empty answer")
            return parse(text)

        return self.post("/chat/completions", body, extract)

    def not_found(self, e: HTTPStatus) -> str:
        return (f"{self.url}/chat/completions: {e} (an unknown model {self.model!r}, or a URL without "
                f"its /v1?)")


def make_client(api: str, url: str | None, model: str, **options: Any) -> Client:
    """The client for ``api`` ('ollama' or 'openai'), with the key from the environment."""
    key, variable = api_key_from_env(api)
    cls = OllamaClient if api == "ollama" else OpenAIClient
    return cls(url or DEFAULT_OLLAMA_URL, model, api_key=key, key_variable=variable, **options)
