"""What a clustering run clusters (`cluster --on images|descriptions|tags`): the image
vectors, the vectors of the images' descriptions, or their TF-IDF tag vectors; and
what exactly (text model, vision model and prompt, tag source), stored in the run's params.

Which description and which tags count is the collection's rule
(:meth:`ImageCollection.descriptions`, :meth:`ImageCollection.tag_source`); images
without one are left out of the run (and counted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import sqlite_utils

from ..models import ModelError, file_sha256, find_text_model
from ..store.collection import ImageCollection
from .clusterstore import StoreError
from .tagvectors import tag_vectors
from .textvectors import embed_descriptions

SOURCES = ("images", "descriptions", "tags")
#: Label sources computed when ``--labels`` is not given: the paper's TF-IDF terms for a
#: run on descriptions, the distinctive tags for one on tags.
DEFAULT_LABELS = {"images": ("terms", "clip"), "descriptions": ("terms",), "tags": ("tags", "terms")}
SENTENCE_EXAMPLE = "Xenova/paraphrase-multilingual-MiniLM-L12-v2"


@dataclass
class ClusterInput:
    source: str
    ids: np.ndarray  # image ids, ordered
    x: np.ndarray  # their L2-normalised vectors
    params: dict = field(default_factory=dict)  # what exactly was clustered
    left_out: int = 0  # images of the database not in the run (no description / no tags)


def cluster_input(db: sqlite_utils.Database, on: str = "images", *, text_model_name: str | None = None,
                  describer: str | None = None, prompt_id: int | None = None, tag_source: str | None = None,
                  seed: int = 0, on_status: Callable[[str], None] = lambda s: None,
                  on_progress: Callable[[int, int], None] | None = None) -> ClusterInput:
    """The vectors a run ``on`` images, descriptions or tags clusters (embedding the
    descriptions that have no vector from the text model yet)."""
    coll = ImageCollection(db)
    if on == "images":
        ids, x = coll.vectors()
        return ClusterInput("images", ids, x)
    n_images = db.execute("SELECT count(*) FROM images").fetchone()[0] if db["images"].exists() else 0
    if on == "descriptions":
        got = _descriptions(db, coll, text_model_name, describer, prompt_id, on_status, on_progress)
    elif on == "tags":
        source = coll.tag_source(tag_source)
        if source is None:
            raise StoreError("this database has no tags: run `imageclust tag` first (or `imageclust describe` "
                             "with tags)")
        ids, x, info = tag_vectors(coll.tags(source), seed=seed)
        got = ClusterInput("tags", ids, x, {"tag_source": source, "tag_vectors": info})
    else:
        raise StoreError(f"cannot cluster on {on!r}: choose from {', '.join(SOURCES)}")
    got.left_out = max(n_images - len(got.ids), 0)
    return got


def _descriptions(db: sqlite_utils.Database, coll: ImageCollection, name: str | None, describer: str | None,
                  prompt_id: int | None, on_status: Callable[[str], None],
                  on_progress: Callable[[int, int], None] | None) -> ClusterInput:
    picked = coll.descriptions(describer, prompt_id)
    if not picked:
        have = coll.describers()
        if not have:
            raise StoreError("this database has no descriptions: run `imageclust describe` first")
        which = ", ".join(f"{d['model']} with prompt {d['prompt_id']} ({d['images']} images)" for d in have)
        raise StoreError(f"no descriptions by {'model ' + repr(describer) if describer else 'any model'}"
                         f"{f' with prompt {prompt_id}' if prompt_id is not None else ''}: there are {which}")
    if name is None:
        model = coll.model()
        if model is None:
            raise ModelError("no text model to embed the descriptions with: pass --text-model DIR|HUB_ID")
        try:
            files = find_text_model(model["name"])
        except ModelError as e:
            raise ModelError(f"the descriptions cannot be embedded with the text tower of the database's model "
                             f"({e}): pass --text-model DIR|HUB_ID, a CLIP model or a sentence-embedding model "
                             f"such as {SENTENCE_EXAMPLE}") from e
    else:
        files = find_text_model(name)
    s = embed_descriptions(db, files, picked, on_status=on_status, on_progress=on_progress)
    ids, x = coll.vectors("descriptions", text_model_id=s.text_model_id, describer=describer, prompt_id=prompt_id)
    used: dict[str, int] = {}
    for d in picked:
        key = f"{d['model']} / prompt {d['prompt_id']}"
        used[key] = used.get(key, 0) + 1
    params = {"text_model": {"id": s.text_model_id, "name": files.name, "kind": files.kind,
                             "sha256": file_sha256(files.model), "max_tokens": files.max_tokens},
              "describer": describer, "prompt_id": prompt_id, "descriptions_used": used,
              "embedded_now": {"descriptions": s.embedded, "truncated": s.truncated}}
    return ClusterInput("descriptions", ids, x, params)
