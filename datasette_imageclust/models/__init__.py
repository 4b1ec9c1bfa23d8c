"""Embedding models: finding them (a local directory or the Hugging Face Hub),
preprocessing images for them and running them with onnxruntime. They serve ingest
(image vectors), analysis (zero-shot labels, query vectors) and the web (text and upload
search) alike, so this package imports nothing else of ``datasette_imageclust``.
"""
from .hub import (  # noqa: F401
    DEFAULT_MODEL,
    ModelError,
    ModelFiles,
    TextModelFiles,
    file_sha256,
    find_model,
    find_text_model,
    hub_file,
    is_local,
)
from .onnx import ImageEmbedder, SentenceEmbedder, TextEmbedder, TextTower, text_model  # noqa: F401
from .preprocess import Preprocessor, l2_normalise  # noqa: F401
