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

from . import variants

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


def _why_offline(path: str) -> str | None:
    """None when the Hub can be asked, else why not: HF_HUB_OFFLINE, or no answer to one
    probe of ``path`` (decided once per endpoint and process)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set (no network)"
    endpoint = constants.ENDPOINT
    if endpoint not in _REACHABLE:
        _REACHABLE[endpoint] = _hub_unreachable(f"{endpoint}/{path}")
    return None if _REACHABLE[endpoint] is None else f"the Hub at {endpoint} cannot be reached ({_REACHABLE[endpoint]})"


IMAGE_LAYOUT = "--model DIR with a local copy in the Hugging Face layout (onnx/vision_model.onnx + preprocessor_config.json)"


def _offline_hint(repo_id: str, why: str, local: str) -> ModelError:
    return ModelError(
        f"model {repo_id!r} is not in the Hugging Face cache and cannot be downloaded: {why}. "
        f"Either run once with network access to fetch it, or pass {local}."
    )


def hub_file(repo_id: str, filename: str, *, required: bool = True, local: str = IMAGE_LAYOUT) -> Path | None:
    """Path of ``filename`` from Hub repo ``repo_id``: from the cache if there, else
    downloaded (with a progress bar on stderr). None if optional and absent. ``local``:
    how to pass a local copy instead, for the message when the Hub cannot be reached."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, local_files_only=True))
    except Exception:
        pass  # not cached (or the cache is unreadable): try the network
    why = _why_offline(f"{repo_id}/resolve/main/{filename}")
    if why is not None:
        if not required:
            return None
        raise _offline_hint(repo_id, why, local)
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
    raise _offline_hint(repo_id, detail, local) from err


@dataclass
class ModelFiles:
    """Where a model's files are; text ones may be missing."""

    name: str
    vision: Path
    preprocessor: Path
    text: Path | None = None
    tokenizer: Path | None = None
    precision: str = "fp32"  # which variant (models/variants.py) the ONNX files are


def _variant_missing(name: str, precision: str, tried: list[str], onnx_files: list[str]) -> ModelError:
    return ModelError(f"{name} has no {precision} variant of vision_model.onnx (looked for {', '.join(tried)}); "
                      f"its ONNX files: {', '.join(sorted(onnx_files)) or 'none'}")


def _local_variant(d: Path, bases: tuple[str, ...], precision: str) -> Path | None:
    return next((d / v for f in bases for v in variants.variant_names(f, precision) if (d / v).is_file()), None)


def _hub_variant(name: str, precision: str) -> Path:
    """Download only the ``precision`` variant of the vision tower."""
    tried = variants.variant_names(VISION_FILES[0], precision)
    for candidate in tried:
        vision = hub_file(name, candidate, required=candidate == tried[-1] and precision == "fp32")
        if vision is not None:
            return vision
    raise _variant_missing(name, precision, tried, [f for f in _hub_listing(name) if f.endswith(".onnx")])


def _int8_demoted(precision: str, keep: str | None, vision: Path | None) -> bool:
    """``auto``'s second look: an int8 file doing its work in convolutions (measured slow)
    gives way to fp32, unless the database's vectors are int8 already."""
    return precision == "int8" and keep != "int8" and vision is not None and variants.int8_is_slow(vision)


def find_model(name: str | None = None, *, text: bool = False, precision: str | None = None,
               keep: str | None = None) -> ModelFiles:
    """Locate a model by local directory or Hub repo id (default: CLIP ViT-B/32), in
    variant ``precision`` (fp32, fp16, int8 or auto; see :mod:`.variants`). With auto,
    ``keep`` is the variant a database's vectors already are, taken where the model has it.

    With ``text=True`` the text tower and tokenizer are fetched too when available; the
    text tower is the same variant when the model ships it, else fp32.
    """
    name = name or DEFAULT_MODEL
    precision = precision or "fp32"
    if precision not in variants.CHOICES:
        raise ModelError(f"--precision must be one of {', '.join(variants.CHOICES)}, not {precision!r}")
    if is_local(name):
        d = Path(os.path.expanduser(name))
        if not d.is_dir():
            raise ModelError(f"model directory {name} does not exist")
        auto = precision == "auto"
        if auto:
            have = {p for p in variants.PRECISIONS if _local_variant(d, VISION_FILES, p)}
            precision = variants.auto_precision(variants.cpu_flags(), have, keep=keep)
        vision = _local_variant(d, VISION_FILES, precision)
        if auto and _int8_demoted(precision, keep, vision):
            precision, vision = "fp32", _local_variant(d, VISION_FILES, "fp32")
        if vision is None:
            if precision == "fp32":
                raise ModelError(f"{name} has no vision_model.onnx (looked for {', '.join(VISION_FILES)})")
            tried = [v for f in VISION_FILES for v in variants.variant_names(f, precision)]
            found = [str(p.relative_to(d)) for p in (*d.glob("*.onnx"), *d.glob("onnx/*.onnx"))]
            raise _variant_missing(name, precision, tried, found)
        pre = d / "preprocessor_config.json"
        if not pre.is_file():
            raise ModelError(f"{name} has no preprocessor_config.json")
        txt = _local_variant(d, TEXT_FILES, precision) or _local_variant(d, TEXT_FILES, "fp32")
        tok = d / "tokenizer.json"
        return ModelFiles(str(name), vision, pre, txt, tok if tok.is_file() else None, precision)
    pre = hub_file(name, "preprocessor_config.json")
    auto = precision == "auto"
    if auto:
        precision = variants.auto_precision(variants.cpu_flags(), _hub_precisions(name, keep), keep=keep)
    vision = _hub_variant(name, precision)
    if auto and _int8_demoted(precision, keep, vision):
        precision, vision = "fp32", _hub_variant(name, "fp32")
    txt = tok = None
    if text:
        tok = hub_file(name, "tokenizer.json", required=False)
        if tok:
            txt = next((t for t in (hub_file(name, v, required=False)
                                    for v in variants.variant_names(TEXT_FILES[0], precision)) if t), None)
            txt = txt or hub_file(name, TEXT_FILES[0], required=False)
    return ModelFiles(name, vision, pre, txt, tok, precision)  # type: ignore[arg-type]


def _hub_listing(repo_id: str) -> list[str]:
    """The files of Hub repo ``repo_id`` (empty when it cannot be listed, e.g. offline)."""
    if _why_offline(f"api/models/{repo_id}") is not None:
        return []
    try:
        import huggingface_hub

        return list(huggingface_hub.list_repo_files(repo_id))
    except Exception:
        return []


def _hub_precisions(repo_id: str, keep: str | None) -> set[str]:
    """The variants of the vision tower ``repo_id`` ships: ``keep`` alone when it is in the
    cache (nothing to ask), else as the Hub lists them, else (offline) those in the cache."""
    from huggingface_hub import try_to_load_from_cache

    def cached(p: str) -> bool:
        return any(isinstance(try_to_load_from_cache(repo_id, v), str)
                   for v in variants.variant_names(VISION_FILES[0], p))

    if keep in variants.PRECISIONS and cached(keep):
        return {keep}
    listed = set(_hub_listing(repo_id))
    if listed:
        return {p for p in variants.PRECISIONS if listed & set(variants.variant_names(VISION_FILES[0], p))}
    return {p for p in variants.PRECISIONS if cached(p)}


_SHA256: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """The sha256 of a file, remembered while its size and mtime stay the same (a model
    file is hashed once per process however often it is named)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA256[key] = h.hexdigest()
    return _SHA256[key]




# --- text models (for descriptions) ------------------------------------------------------

SENTENCE_FILES = ("onnx/model.onnx", "model.onnx")
TEXT_LAYOUT = ("--text-model DIR with a local copy: a CLIP model directory (onnx/text_model.onnx + "
               "tokenizer.json) or a sentence-embedding model (onnx/model.onnx + tokenizer.json)")
CLIP_MAX_TOKENS = 77
_CONFIGS = ("sentence_bert_config.json", "tokenizer_config.json", "config.json")


@dataclass
class TextModelFiles:
    """A text model: ``kind`` 'clip' (a CLIP text tower, pooled by the model itself) or
    'sentence' (an encoder whose token states are mean-pooled)."""

    name: str
    kind: str
    model: Path
    tokenizer: Path
    max_tokens: int


def _max_tokens(tokenizer: Path, configs: dict[str, Path | None]) -> int:
    """The longest input a sentence model takes, as its files say: sentence-transformers'
    max_seq_length, else the tokenizer's limit, else the position embeddings, else 512."""
    import json

    def read(path: Path | None) -> dict:
        try:
            data = json.loads(path.read_text("utf-8")) if path else {}
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    sbert, tok_cfg, cfg = (read(configs.get(f)) for f in _CONFIGS)
    trunc = read(tokenizer).get("truncation") or {}
    for value in (sbert.get("max_seq_length"), tok_cfg.get("model_max_length"), trunc.get("max_length")):
        if isinstance(value, int) and 0 < value < 100_000:  # tokenizer_config says 1e30 for "none"
            return value
    positions = cfg.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 2:
        # RoBERTa-family models number positions from padding_idx + 1 = 2.
        return positions - 2 if cfg.get("model_type") in ("roberta", "xlm-roberta", "camembert") else positions
    return 512


def find_text_model(name: str) -> TextModelFiles:
    """Which text model ``name`` (a directory or a Hub id) is: a CLIP text tower
    (``onnx/text_model.onnx``) or a sentence-embedding encoder (``onnx/model.onnx``), each
    with its ``tokenizer.json``. Hub ids go through the cached download (:func:`hub_file`)."""
    if is_local(name):
        d = Path(os.path.expanduser(name))
        if not d.is_dir():
            raise ModelError(f"text model directory {name} does not exist")
        tok = d / "tokenizer.json"
        clip = next((d / f for f in TEXT_FILES if (d / f).is_file()), None)
        sentence = next((d / f for f in SENTENCE_FILES if (d / f).is_file()), None)
        if not tok.is_file() or (clip is None and sentence is None):
            raise ModelError(f"{name} has no text model: expected a CLIP text tower (onnx/text_model.onnx + "
                             f"tokenizer.json) or a sentence-embedding model (onnx/model.onnx + tokenizer.json)")
        if clip is not None:
            return TextModelFiles(str(name), "clip", clip, tok, CLIP_MAX_TOKENS)
        configs = {f: d / f if (d / f).is_file() else None for f in _CONFIGS}
        return TextModelFiles(str(name), "sentence", sentence, tok, _max_tokens(tok, configs))  # type: ignore[arg-type]
    tok = hub_file(name, "tokenizer.json", local=TEXT_LAYOUT)
    clip = hub_file(name, TEXT_FILES[0], required=False, local=TEXT_LAYOUT)
    if clip is not None:
        return TextModelFiles(name, "clip", clip, tok, CLIP_MAX_TOKENS)  # type: ignore[arg-type]
    model = hub_file(name, SENTENCE_FILES[0], local=TEXT_LAYOUT)
    configs = {f: hub_file(name, f, required=False, local=TEXT_LAYOUT) for f in _CONFIGS}
    return TextModelFiles(name, "sentence", model, tok, _max_tokens(tok, configs))  # type: ignore[arg-type]
