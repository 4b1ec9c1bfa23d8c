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
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

DEFAULT_MODEL = "Xenova/clip-vit-base-patch32"
VISION_FILES = ("onnx/vision_model.onnx", "vision_model.onnx")
TEXT_FILES = ("onnx/text_model.onnx", "text_model.onnx")


class ModelError(Exception):
    """The model cannot be found, fetched or used; the message says what to do."""


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _is_local(name: str) -> bool:
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
    if _is_local(name):
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


# --- preprocessing --------------------------------------------------------------

_RESAMPLE = {0: Image.NEAREST, 1: Image.LANCZOS, 2: Image.BILINEAR, 3: Image.BICUBIC,
             4: Image.BOX, 5: Image.HAMMING}


@dataclass
class Preprocessor:
    """A generic ``CLIPImageProcessor``: resize, centre-crop, rescale, normalise."""

    shortest_edge: int | None = 224
    resize_hw: tuple[int, int] | None = None
    crop_hw: tuple[int, int] | None = (224, 224)
    resample: int = 3
    rescale: float = 1 / 255
    mean: Sequence[float] = (0.0, 0.0, 0.0)
    std: Sequence[float] = (1.0, 1.0, 1.0)
    config: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: dict) -> "Preprocessor":
        size = cfg.get("size", 224)
        shortest = resize_hw = None
        if cfg.get("do_resize", True):
            if isinstance(size, int):
                shortest = size
            elif "shortest_edge" in size:
                shortest = int(size["shortest_edge"])
            else:
                resize_hw = (int(size["height"]), int(size["width"]))
        crop = None
        if cfg.get("do_center_crop", False):
            c = cfg.get("crop_size", 224)
            crop = (c, c) if isinstance(c, int) else (int(c["height"]), int(c["width"]))
        norm = cfg.get("do_normalize", True)
        return cls(
            shortest_edge=shortest,
            resize_hw=resize_hw,
            crop_hw=crop,
            resample=int(cfg.get("resample", 3)),
            rescale=float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0,
            mean=cfg.get("image_mean", [0.0] * 3) if norm else [0.0] * 3,
            std=cfg.get("image_std", [1.0] * 3) if norm else [1.0] * 3,
            config=cfg,
        )

    @property
    def min_side(self) -> int:
        """The smallest source side that still gives full-quality input (for JPEG draft)."""
        sides = [s for s in (self.shortest_edge, *(self.resize_hw or ()), *(self.crop_hw or ())) if s]
        return max(sides) if sides else 224

    def to_uint8(self, im: Image.Image) -> np.ndarray:
        """Resize and crop an RGB image; returns HWC uint8 (cheap to queue and batch)."""
        w, h = im.size
        if self.resize_hw:
            im = im.resize((self.resize_hw[1], self.resize_hw[0]), _RESAMPLE[self.resample])
        elif self.shortest_edge:
            s = self.shortest_edge
            nw, nh = (s, max(1, round(h * s / w))) if w <= h else (max(1, round(w * s / h)), s)
            if (nw, nh) != (w, h):
                im = im.resize((nw, nh), _RESAMPLE[self.resample])
        if self.crop_hw:
            ch, cw = self.crop_hw
            w, h = im.size
            left, top = (w - cw) // 2, (h - ch) // 2
            im = im.crop((left, top, left + cw, top + ch))  # pads with black if too small
        return np.asarray(im, dtype=np.uint8)

    def normalise(self, batch: np.ndarray) -> np.ndarray:
        """NHWC uint8 -> NCHW float32, rescaled and normalised."""
        x = batch.astype(np.float32)
        scale = np.asarray(self.rescale / np.asarray(self.std), dtype=np.float32)
        shift = np.asarray(-np.asarray(self.mean) / np.asarray(self.std), dtype=np.float32)
        x = x * scale + shift
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def l2_normalise(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(n, 1e-12)).astype(np.float32)


def _session(path: Path, threads: int | None, spinning: bool = True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    if not spinning:
        # Idle worker threads sleep instead of busy-waiting, leaving their CPU time to
        # other work in the process (image decoding while a batch runs).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelError(f"cannot load {path} with onnxruntime: {e}") from e


class ImageEmbedder:
    """Runs a vision ONNX model: PIL images or uint8 crops in, L2-normalised vectors out."""

    def __init__(self, files: ModelFiles, threads: int | None = None, spinning: bool = True):
        self.files = files
        self.name = files.name
        cfg = json.loads(Path(files.preprocessor).read_text())
        self.preprocessor = Preprocessor.from_config(cfg)
        self.session = _session(files.vision, threads, spinning)
        self.input_name = self.session.get_inputs()[0].name
        outs = [o.name for o in self.session.get_outputs()]
        self.output_name = "image_embeds" if "image_embeds" in outs else outs[0]
        shape = self.session.get_outputs()[outs.index(self.output_name)].shape
        dim = shape[-1] if isinstance(shape[-1], int) else None
        if dim is None:
            dim = self.embed_uint8(np.zeros((1, *self._input_hw(), 3), np.uint8)).shape[1]
        self.dimensions = int(dim)
        self._sha256: str | None = None

    def _input_hw(self) -> tuple[int, int]:
        p = self.preprocessor
        return p.crop_hw or p.resize_hw or (p.shortest_edge or 224,) * 2  # type: ignore[return-value]

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.files.vision)
        return self._sha256

    def embed_uint8(self, batch: np.ndarray) -> np.ndarray:
        """NHWC uint8 crops (from ``preprocessor.to_uint8``) -> normalised vectors."""
        x = self.preprocessor.normalise(batch)
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        out = out.reshape(out.shape[0], -1)
        return l2_normalise(out)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        crops = np.stack([self.preprocessor.to_uint8(im.convert("RGB")) for im in images])
        return self.embed_uint8(crops)


class TextEmbedder:
    """Runs a CLIP text ONNX model with its ``tokenizer.json``."""

    MAX_TOKENS = 77

    def __init__(self, files: ModelFiles, threads: int | None = None):
        if files.text is None or files.tokenizer is None:
            raise ModelError(f"model {files.name} has no text tower (text_model.onnx + tokenizer.json)")
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(files.tokenizer))
        self.session = _session(files.text, threads)
        self.inputs = {i.name for i in self.session.get_inputs()}
        outs = [o.name for o in self.session.get_outputs()]
        self.output_name = "text_embeds" if "text_embeds" in outs else outs[0]
        # CLIP pads with <|endoftext|>; the model pools at the first one.
        self.pad_id = self.tokenizer.token_to_id("<|endoftext|>") or 0

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            out.append(self._embed_batch(texts[i : i + batch_size]))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        encs = [self.tokenizer.encode(t).ids for t in texts]
        encs = [e if len(e) <= self.MAX_TOKENS else e[: self.MAX_TOKENS - 1] + [e[-1]] for e in encs]
        n = max(len(e) for e in encs)
        ids = np.full((len(encs), n), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), n), dtype=np.int64)
        for r, e in enumerate(encs):
            ids[r, : len(e)] = e
            mask[r, : len(e)] = 1
        feed: dict[str, Any] = {"input_ids": ids}
        if "attention_mask" in self.inputs:
            feed["attention_mask"] = mask
        out = self.session.run([self.output_name], feed)[0]
        return l2_normalise(out.reshape(out.shape[0], -1))
