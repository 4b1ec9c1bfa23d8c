"""Embedding models: finding them (local directory or Hugging Face Hub), preprocessing
images as their ``preprocessor_config.json`` says, and running them with onnxruntime.

A model directory has the layout of ``Xenova/clip-vit-base-patch32`` on the Hub::

    preprocessor_config.json
    tokenizer.json                 (text tower only)
    onnx/vision_model.onnx         (or vision_model.onnx at the top)
    onnx/text_model.onnx           (optional: text search and zero-shot labels)
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "Xenova/clip-vit-base-patch32"
VISION_FILES = ("onnx/vision_model.onnx", "vision_model.onnx")
TEXT_FILES = ("onnx/text_model.onnx", "text_model.onnx")


class ModelError(Exception):
    """The model cannot be found, fetched or used; the message says what to do."""


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_local(name: str) -> bool:
    """A directory that exists, or anything that cannot be a Hub ``owner/name`` id."""
    return os.path.isdir(os.path.expanduser(name)) or not _REPO_ID.match(name)


PROBE_SECONDS = 3.0  # one attempt to reach the Hub before downloading; offline is decided by then
_REACHABLE: dict[str, str | None] = {}


def _hub_unreachable(url: str) -> str | None:
    """None if the Hub answers at all (any HTTP status), else why not. One attempt, in a
    thread so that DNS (which has no timeout of its own) cannot hold us past PROBE_SECONDS;
    huggingface_hub would retry with backoff for half a minute, printing each retry."""
    import threading
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # a redirect is an answer
            return None

    result: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.build_opener(NoRedirect).open(
                urllib.request.Request(url, method="HEAD"), timeout=PROBE_SECONDS).close()
            result.append(None)
        except urllib.error.HTTPError:
            result.append(None)
        except (urllib.error.URLError, OSError, ValueError) as e:
            result.append(str(getattr(e, "reason", None) or e))

    t = threading.Thread(target=probe, name="hub-probe", daemon=True)
    t.start()
    t.join(PROBE_SECONDS + 0.5)
    return result[0] if result else f"no answer within {PROBE_SECONDS:g} s"


def _offline_hint(repo_id: str, why: str) -> ModelError:
    return ModelError(
        f"model {repo_id!r} is not in the Hugging Face cache and cannot be downloaded: {why}. "
        f"Either run once with network access to fetch it, or pass --model DIR with a local copy "
        f"in the Hugging Face layout (onnx/vision_model.onnx + preprocessor_config.json)."
    )


def hub_file(repo_id: str, filename: str, *, required: bool = True) -> Path | None:
    """Path of ``filename`` from Hub repo ``repo_id``: from the cache if there, else
    downloaded (with a progress bar on stderr). None if optional and absent."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, local_files_only=True))
    except Exception:
        pass  # not cached (or the cache is unreadable): try the network
    if constants.is_offline_mode():
        if not required:
            return None
        raise _offline_hint(repo_id, "HF_HUB_OFFLINE is set (no network)")
    endpoint = constants.ENDPOINT
    if endpoint not in _REACHABLE:
        _REACHABLE[endpoint] = _hub_unreachable(f"{endpoint}/{repo_id}/resolve/main/{filename}")
    if _REACHABLE[endpoint] is not None:
        if not required:
            return None
        raise _offline_hint(repo_id, f"the Hub at {endpoint} cannot be reached ({_REACHABLE[endpoint]})")
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename))
    except EntryNotFoundError as e:
        if not isinstance(e, LocalEntryNotFoundError):  # the repo really lacks the file
            if required:
                raise ModelError(f"the Hub repo {repo_id} has no {filename}") from e
            return None
        err: Exception = e
    except Exception as e:
        err = e
    if not required:
        return None
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    raise _offline_hint(repo_id, detail) from err


@dataclass
class ModelFiles:
    """Where a model's files are; text ones may be missing."""

    name: str
    vision: Path
    preprocessor: Path
    text: Path | None = None
    tokenizer: Path | None = None


def find_model(name: str | None = None, *, text: bool = False) -> ModelFiles:
    """Locate a model by local directory or Hub repo id (default: CLIP ViT-B/32).

    With ``text=True`` the text tower and tokenizer are fetched too when available.
    """
    name = name or DEFAULT_MODEL
    if is_local(name):
        d = Path(os.path.expanduser(name))
        if not d.is_dir():
            raise ModelError(f"model directory {name} does not exist")
        vision = next((d / f for f in VISION_FILES if (d / f).is_file()), None)
        if vision is None:
            raise ModelError(f"{name} has no vision_model.onnx (looked for {', '.join(VISION_FILES)})")
        pre = d / "preprocessor_config.json"
        if not pre.is_file():
            raise ModelError(f"{name} has no preprocessor_config.json")
        txt = next((d / f for f in TEXT_FILES if (d / f).is_file()), None)
        tok = d / "tokenizer.json"
        return ModelFiles(str(name), vision, pre, txt, tok if tok.is_file() else None)
    pre = hub_file(name, "preprocessor_config.json")
    vision = hub_file(name, VISION_FILES[0])
    txt = tok = None
    if text:
        tok = hub_file(name, "tokenizer.json", required=False)
        txt = hub_file(name, TEXT_FILES[0], required=False) if tok else None
    return ModelFiles(name, vision, pre, txt, tok)  # type: ignore[arg-type]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


