"""Text (and uploaded-image) queries: find the database's model on this machine, never
over the network, and keep its embedders loaded once per process."""
from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from ..models import (
    ImageEmbedder,
    ModelError,
    ModelFiles,
    TextEmbedder,
    find_model,
    is_local,
)
from ..store.collection import ImageCollection
from ..store.connection import Connection

_LOCK = threading.Lock()
_TEXT: dict[str, TextEmbedder | ModelError] = {}
_IMAGE: dict[str, ImageEmbedder | ModelError] = {}
_FAILED_AT: dict[str, float] = {}
RETRY_SECONDS = 60.0  # a missing model is looked for again after this long


def _offline_files(name: str, precision: str | None = None) -> ModelFiles:
    """find_model without the network: a local directory, or a Hub id already cached;
    ``precision`` the variant the database recorded (the text tower follows it)."""
    if is_local(name):
        return find_model(name, text=True, precision=precision)
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(name, local_files_only=True)
    except Exception as e:
        raise ModelError(f"model {name} is not in this server's Hugging Face cache "
                         f"({type(e).__name__}); set the plugin's 'model' setting to a local copy") from e
    return find_model(local, text=True, precision=precision)


def _get(cache: dict, name: str, make, precision: str | None = None) -> Any:
    key = f"{name}\0{precision or 'fp32'}"
    with _LOCK:
        hit = cache.get(key)
        if isinstance(hit, ModelError) and time.monotonic() - _FAILED_AT.get(key, 0) > RETRY_SECONDS:
            hit = None
        if hit is None:
            try:
                hit = make(_offline_files(name, precision))
            except ModelError as e:
                hit = e
                _FAILED_AT[key] = time.monotonic()
            cache[key] = hit
    if isinstance(hit, ModelError):
        raise hit
    return hit


def availability(name: str) -> dict[str, str | None]:
    """Without loading any model: why text / image queries cannot be embedded with
    model ``name`` on this server ({"text": reason or None, "image": reason or None})."""
    try:
        files = _offline_files(name)
    except ModelError as e:
        return {"text": str(e), "image": str(e)}
    text = None
    if files.text is None or files.tokenizer is None:
        text = f"model {name} has no text tower (text_model.onnx + tokenizer.json)"
    return {"text": text, "image": None}


def text_embedder(name: str, precision: str | None = None) -> TextEmbedder:
    return _get(_TEXT, name, lambda f: TextEmbedder(f, threads=1), precision)


def image_embedder(name: str, precision: str | None = None) -> ImageEmbedder:
    return _get(_IMAGE, name, lambda f: ImageEmbedder(f, threads=1), precision)


def model_for(db: Connection, override: str | None = None) -> tuple[str, int]:
    """(model name or directory, dimensions) to embed queries for ``db`` with."""
    m = ImageCollection(db).model()
    if m is None:
        raise ModelError("this database has no embedding model recorded")
    return (override or m["name"]), int(m["dimensions"])


def embed_query(name: str, dims: int, text: str, precision: str | None = None) -> np.ndarray:
    """The CLIP text vector of ``text`` by model ``name`` (variant ``precision``), checked to be ``dims``-d."""
    vec = text_embedder(name, precision).embed([text])[0]
    if vec.shape[0] != dims:
        raise ModelError(f"the text tower of {name} gives {vec.shape[0]}-d vectors, the images are {dims}-d")
    return vec


def embed_text(db: Connection, text: str, override: str | None = None) -> np.ndarray:
    """The CLIP text vector of ``text`` in the space of ``db``'s image vectors."""
    name, dims = model_for(db, override)
    return embed_query(name, dims, text, recorded_precision(db, override))


def recorded_precision(db: Connection, override: str | None) -> str | None:
    """The variant the database's vectors were made by (None with another model named)."""
    return precision_of(ImageCollection(db).model(), override)


def precision_of(model: dict | None, override: str | None) -> str | None:
    """The variant to embed queries with: the one ``model`` (a ``models`` row) recorded,
    unless another model is named (``override``, e.g. the plugin's ``model`` setting)."""
    return None if override or model is None else model.get("precision")


def embed_upload(name: str, dims: int, data: bytes, filename: str,
                 max_pixels: int | None = None, precision: str | None = None) -> tuple[np.ndarray, Any]:
    """The vector of uploaded image bytes by model ``name``, decoded exactly as ``load``
    decodes files (same safety limits, same crop; ``max_pixels`` caps what is decoded);
    returns (vector, decode.Decoded)."""
    from ..ingest.decode import decode

    emb = image_embedder(name, precision)
    d = decode(data, emb.preprocessor, name=filename, max_pixels=max_pixels)
    vec = emb.embed_uint8(d.crop[None])[0]
    if vec.shape[0] != dims:
        raise ModelError(f"{name} gives {vec.shape[0]}-d vectors, the database's are {dims}-d")
    return vec, d


def embed_file(db: Connection, data: bytes, filename: str, override: str | None = None) -> np.ndarray:
    """The vector of image bytes in the space of ``db``'s image vectors (its model and variant)."""
    name, dims = model_for(db, override)
    return embed_upload(name, dims, data, filename, precision=recorded_precision(db, override))[0]


def clear_cache() -> None:
    with _LOCK:
        _TEXT.clear()
        _IMAGE.clear()
        _FAILED_AT.clear()
