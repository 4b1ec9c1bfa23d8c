"""The pipeline, one documented function per step: the library API that the ``imageclust``
commands, the benchmarks and the tests all call.

    load            folders -> images, files, thumbnails, vectors; then the search index
    build_index     the similarity index (``load`` keeps it current)
    cluster_images  cluster, store the run, label it; near-duplicates; the map if default
    find_duplicates near-duplicate groups
    build_map       2-D layout + sprite atlas
    find_similar    the nearest images to an image, a text or an image file
    describe        a vision LLM's description (and tags) of every image
    tag             CLIP zero-shot tags per image
    export          the selected images as a table, folder/ZIP, network or figure
    move, merge, split, label, note, review, undo, operations: a run's edits (analysis/curation.py)

Each step is orchestration only: the work is done by :mod:`.ingest` and
:mod:`.analysis`. Conventions: ``db`` is an open ``sqlite_utils.Database`` (from
``store.connection.connect``; only ``load`` takes a path, since it creates the file);
callbacks are ``on_status(line)``, ``on_progress(done, total)`` and ``on_skip(path,
reason)``; a step reports its sub-steps through ``on_status`` and returns its result as a
dataclass with ``as_dict()``; bad input raises an exception of the layer that found it,
whose message is one line for the user (:class:`OptionError` for options checked here).
Heavy modules are imported inside the steps, so ``imageclust --help`` starts fast.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import sqlite_utils

from .analysis.curation import (CurationError, OpResult, cluster_state, label, merge, move, note,  # noqa: F401
                                operations, review, split, undo)
from .analysis.neardup import DuplicatesSummary
from .analysis.search import IndexSummary
from .ingest.summary import LoadSummary
from .store import connection
from .store.collection import ImageCollection, database_file
from .store.paths import display

if TYPE_CHECKING:  # pragma: no cover - types only
    from .analysis.atlas import AtlasSummary
    from .analysis.describe import DescribeSummary
    from .analysis.layout import LayoutSummary
    from .analysis.tags import TagSummary

__all__ = [
    "ClusterSummary", "CurationError", "DescribeSummary", "DuplicatesSummary", "IndexSummary", "LoadSummary",
    "MapSummary", "OpResult", "OptionError", "SimilarImage", "build_index", "build_map", "cluster_images", "cluster_state",
    "describe", "export", "find_duplicates", "find_similar", "label", "load", "merge", "move", "note", "operations",
    "review", "split", "tag", "undo"]

OnStatus = Callable[[str], None]


def _quiet(line: str) -> None:
    pass


class OptionError(ValueError):
    """An option of a step is out of range or contradicts another; the message names it
    as the command line spells it."""


# --- load ---------------------------------------------------------------------------


def load(db_path: str | os.PathLike, paths: Iterable[str], model: str | None = None, *,
         on_status: OnStatus | None = None, on_progress: Callable[[int, int], None] | None = None,
         on_skip: Callable[[str, str], None] | None = None, **options) -> LoadSummary:
    """Load the images under ``paths`` (folders, scanned, or image files) into the
    database at ``db_path`` (created if needed), then bring the similarity index up to date.

    ``model`` is a Hub id or model directory (default CLIP ViT-B/32). ``options`` are
    those of :class:`~datasette_imageclust.ingest.loader.Loader` (``engine="dask"``: a Dask
    cluster; the device: ``models.devices.choose``). Re-runs are incremental and an interrupted run
    (Ctrl-C: ``summary.interrupted``) resumes where it stopped. Raises ``LoadError`` or
    ``ModelError`` before anything is written when the run cannot start.
    """
    from .ingest.loader import Loader

    on_status = on_status or _quiet
    start = time.perf_counter()
    loader = Loader(model, on_status=on_status, on_progress=on_progress, on_skip=on_skip, **options)
    roots = loader.prepare(paths, db_path)  # before the database file is created
    with loader:  # lets go of a Dask cluster, whatever happens
        db = connection.connect(db_path)
        try:
            loader.run(db, roots)
            _refresh_index(db, on_status)
        except KeyboardInterrupt:
            loader.summary.interrupted = True
        finally:
            loader.summary.record_seconds(time.perf_counter() - start)
            if not connection.close(db):
                on_status(connection.wal_note(db_path))
    return loader.summary


# --- similarity index -----------------------------------------------------------------


def build_index(db: sqlite_utils.Database) -> IndexSummary:
    """(Re)build the similarity index: binary-quantised, mean-centred vectors for a fast
    prefilter, rescored exactly (see :mod:`.analysis.search`)."""
    from .analysis import search

    return search.build_index(db)


def _refresh_index(db: sqlite_utils.Database, on_status: OnStatus) -> None:
    """Keep the index (read by the plugin, which never builds it) current after a load."""
    from .analysis import search

    if not search.status(db).fresh:
        on_status("building the similarity index")
        build_index(db)


# --- near-duplicates ----------------------------------------------------------------------


def find_duplicates(db: sqlite_utils.Database, *, on_status: OnStatus | None = None) -> DuplicatesSummary:
    """Find the near-duplicates among the current model's images and replace the stored
    groups (``duplicate_groups``, ``duplicate_members``, ``duplicate_pairs``)."""
    from .analysis import neardup

    return neardup.compute(db, on_status=on_status or _quiet)


# --- map ----------------------------------------------------------------------------------


@dataclass
class MapSummary:
    layout: LayoutSummary
    atlas: AtlasSummary | None  # None with atlas=False

    def as_dict(self) -> dict:
        return {"layout": self.layout.as_dict(), **({} if self.atlas is None else {"atlas": self.atlas.as_dict()})}


def build_map(db: sqlite_utils.Database, *, name: str = "default", method: str = "auto", run: str | None = None,
              make_default: bool | None = None, gap: float = 1.0, landmarks: int = 1000, seed: int = 0,
              levels: str | Sequence[int] | None = None, fmt: str = "webp", quality: int = 70,
              sheet_size: int = 2048, atlas: bool = True, on_status: OnStatus | None = None) -> MapSummary:
    """Compute and store layout ``name`` (2-D coordinates; each cluster of ``run``, default
    the default run, kept together) and, unless ``atlas`` is false, rebuild the sprite
    atlas in its order. ``levels``: atlas cell sizes (None: by the number of images)."""
    from .analysis.atlas import auto_levels, build_atlas, layout_order, parse_levels
    from .analysis.layout import compute_layout

    on_status = on_status or _quiet
    level_list = None if levels is None else parse_levels(levels)  # checked before the slow part
    lay = compute_layout(db, name=name, method=method, run=run, seed=seed, landmarks=landmarks, gap=gap,
                         make_default=make_default, on_status=on_status)
    on_status(f"layout {lay.name!r}: {lay.n_images} images, {lay.groups} groups, method {lay.method}, "
              f"overlaps {lay.overlaps} ({', '.join(f'{k} {v:.1f}s' for k, v in lay.seconds.items())})")
    if not atlas:
        return MapSummary(lay, None)
    on_status("building atlas sheets")
    order = layout_order(db, lay.layout_id)
    a = build_atlas(db, order, levels=level_list or auto_levels(len(order)), fmt=fmt, quality=quality,
                    sheet_size=sheet_size, on_status=on_status)
    on_status("atlas: " + ", ".join(f"{lv}px {a.sheets[lv]} sheets {a.bytes[lv] / 1e6:.1f} MB" for lv in a.levels)
              + f" in {a.seconds:.1f}s")
    return MapSummary(lay, a)


# --- clustering -----------------------------------------------------------------------------


@dataclass
class ClusterSummary:
    run: str
    run_id: int
    method: str
    images: int
    clusters: int
    unclustered: int
    seconds: float  # clustering only
    labels: dict[str, str]  # label source -> what happened
    duplicates: DuplicatesSummary | None
    info: dict  # what the method reports (undersized clusters, outliers, ...)
    default: bool  # the run the plugin shows
    map: MapSummary | None  # laid out (when the run is the default)
    source: str = "images"  # what was clustered: images, descriptions, tags
    left_out: int = 0  # images without descriptions / tags, not in the run
    details: dict = field(default_factory=dict)  # text model, vision model and prompt, tag source
    edits: dict | None = None  # the run's edits re-applied after the matching (curation.Reapplied)

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["seconds"] = round(self.seconds, 3)
        out["duplicates"] = self.duplicates.as_dict() if self.duplicates else None
        out["map"] = self.map.as_dict() if self.map else None
        return out


def cluster_images(db: sqlite_utils.Database, *, on: str = "images", text_model: str | None = None,
                   describer: str | None = None, prompt_id: int | None = None, tag_source: str | None = None,
                   method: str = "ward", name: str = "default",
                   n_clusters: int | None = None, min_size: int | None = None, max_size: int | None = None,
                   small: str = "unclustered", labels: Sequence[str] | None = None, representatives: int = 3,
                   knn: int | None = None, seed: int = 0, make_default: bool | None = None,
                   duplicates: bool = True, layout: bool = True, ollama: Mapping | None = None,
                   on_status: OnStatus | None = None,
                   on_progress: Callable[[int, int], None] | None = None) -> ClusterSummary:
    """Cluster the images ``on`` their vectors (images: the current model's), their
    descriptions' vectors (descriptions: embedded with ``text_model``, default the
    database model's text tower; the newest description per image, or those by vision
    model ``describer`` / prompt ``prompt_id``) or their TF-IDF tag vectors (tags: from
    ``tag_source``, default clip) with ``method`` (ward, kmeans, hdbscan), store the run
    as ``name`` (replacing a run of that name; ``make_default`` None: default if first or
    it replaces the default), label it with the ``labels`` sources (clip, tags, terms,
    ollama; None: the defaults for ``on``; ``ollama``: host, model, timeout, concurrency),
    then, unless told not to, find the near-duplicates and, when the run is the default,
    build the map with its defaults. ``min_size`` / ``max_size`` None: the method's
    defaults (``clustering.default_sizes``: 3-10 for ward and kmeans without
    ``n_clusters``, no cap with it; hdbscan from 5, no cap); ``knn`` None means the
    method's k-NN smoothing default.
    """
    from .analysis import clustering, clusterstore, curation
    from .analysis import labels as labelling
    from .analysis.cluster_input import DEFAULT_LABELS, SOURCES, cluster_input

    on_status = on_status or _quiet
    if on not in SOURCES:
        raise OptionError(f"--on must be one of {', '.join(SOURCES)}")
    if text_model is not None and on != "descriptions":
        raise OptionError("--text-model embeds descriptions: it goes with --on descriptions")
    labels = DEFAULT_LABELS[on] if labels is None else labels
    min_size, max_size = clustering.default_sizes(method, n_clusters, min_size, max_size)
    _check_cluster_options(n_clusters, min_size, max_size, representatives, knn, labels, ollama)
    coll = ImageCollection(db)
    model = coll.model()
    src = cluster_input(db, on, text_model_name=text_model, describer=describer, prompt_id=prompt_id,
                        tag_source=tag_source, seed=seed, on_status=on_status, on_progress=on_progress)
    ids, x = src.ids, src.x
    if len(ids) == 0:
        raise OptionError(f"{display(database_file(db) or 'the database')} has no image vectors: run `imageclust load` first" if on == "images"
                          else f"no image has {on} to cluster")
    if src.left_out:
        on_status(f"{src.left_out} images without {on} are left out of this run")
    params = {"n_clusters": n_clusters, "min_size": min_size, "max_size": max_size, "small": small, "seed": seed}
    if knn is not None:
        params["knn_k"] = knn
    on_status(f"clustering {len(ids)} images" + ("" if on == "images" else f" on their {on}") + f" with {method}")
    start = time.perf_counter()
    res = clustering.run(method, x, **params)
    seconds = time.perf_counter() - start
    chosen = {"describer": describer, "prompt_id": prompt_id, "tag_source": tag_source}  # for the labels too
    stored = {**params, "result": res.info, "left_out": src.left_out,
              **{k: v for k, v in chosen.items() if v is not None}, **src.params}
    edits: list = []
    run_id = clusterstore.store_run(db, name, method, stored, ids, x, res.labels,
                                    model_id=model["id"] if model else None, seconds=seconds,
                                    representatives=representatives, default=make_default, source=src.source,
                                    after_match=lambda d, rid: edits.append(curation.reapply(d, rid, on_status)))
    n_real = int(res.labels.max()) + 1 if len(res.labels) and res.labels.max() >= 0 else 0
    n_un = int((res.labels < 0).sum())
    on_status(f"{n_real} clusters, {n_un} images unclustered in {seconds:.1f}s (run {name!r})")
    info = res.info
    if info.get("reduction") == "pca" and len(ids) > 16:
        on_status(f"hdbscan ran on a {info['reduced_dimensions']}-d PCA projection: umap-learn is not installed "
                  f"(pip install 'datasette-imageclust[umap]' for UMAP, the recipe of the descriptions paper)")
    if info.get("undersized_clusters"):
        on_status(f"{info['undersized_clusters']} undersized clusters ({info['undersized_images']} images): "
                  + (f"{info['merged_into_nearest']} images merged into the nearest cluster with room"
                     if small == "merge" else "their images are unclustered"))
    if info.get("trimmed_outliers"):
        on_status(f"{info['trimmed_outliers']} images unclustered: none of their 5 nearest neighbours "
                  f"shared their cluster")
    notes = labelling.label_run(db, run_id, list(labels), on_status=on_status, ollama=dict(ollama or {}))
    dup = find_duplicates(db, on_status=on_status) if duplicates else None
    if dup:
        on_status(f"{dup.groups} near-duplicate groups ({dup.pairs} pairs)")
    is_default = bool(coll.run(name)["is_default"])
    laid_out = None
    if layout and is_default:
        on_status("laying out the map (--no-layout skips this)")
        laid_out = build_map(db, on_status=on_status)
    return ClusterSummary(name, run_id, method, int(len(ids)), n_real, n_un, seconds, notes, dup, info,
                          is_default, laid_out, src.source, src.left_out, src.params,
                          edits[0].as_dict() if edits else None)


def _check_cluster_options(n_clusters: int | None, min_size: int, max_size: int | None, representatives: int,
                           knn: int | None, sources: Sequence[str], ollama: Mapping | None) -> None:
    from .analysis import labels as labelling

    if min_size < 1:
        raise OptionError("--min-size must be at least 1")
    if max_size is not None and max_size < max(min_size, 2):
        raise OptionError("--max-size must be at least 2 and at least --min-size")
    if n_clusters is not None and n_clusters < 1:
        raise OptionError("--clusters must be at least 1")
    if representatives < 1:
        raise OptionError("--representatives must be at least 1")
    if knn is not None and knn < 0:
        raise OptionError("--knn must be 0 or more")
    if ollama and ollama.get("concurrency", 1) < 1:
        raise OptionError("--ollama-concurrency must be at least 1")
    bad = [s for s in sources if s not in labelling.SOURCES]
    if bad:
        raise OptionError(f"unknown label source {bad[0]!r}: choose from {', '.join(labelling.SOURCES)}")


# --- tags ------------------------------------------------------------------------------------


def tag(db: sqlite_utils.Database, *, top: int = 10, min_score: float | None = None, replace: bool = False,
        on_status: OnStatus | None = None, on_progress: Callable[[int, int], None] | None = None) -> TagSummary:
    """Tag each image with its ``top`` best terms of the zero-shot vocabulary (CLIP: the
    image vector against the terms' text vectors, calibrated as the cluster labels are),
    those scoring at least ``min_score``; only images without CLIP tags, or all with
    ``replace``. Needs the model's text tower (``ModelError`` otherwise)."""
    from .analysis import tags

    if top < 1:
        raise OptionError("--top must be at least 1")
    return tags.tag_images(db, top=top, min_score=min_score, replace=replace, on_status=on_status or _quiet,
                           on_progress=on_progress)


# --- similarity search -----------------------------------------------------------------------


@dataclass
class SimilarImage:
    image_id: int
    similarity: float  # cosine similarity, 1 = the same vector
    path: str | None  # its first file

    def as_dict(self) -> dict:
        return {"image_id": self.image_id, "similarity": round(self.similarity, 6), "path": self.path}


def find_similar(db: sqlite_utils.Database, *, image_id: int | None = None, text: str | None = None,
                 file: str | None = None, model: str | None = None, k: int = 10,
                 exact: bool = False) -> list[SimilarImage]:
    """The ``k`` images nearest to image ``image_id`` (itself left out), to ``text``
    (needs the model's text tower) or to the image ``file`` (need not be in the database),
    most similar first: exactly one of the three. ``model`` overrides the database's model
    for embedding the query; ``exact`` scans every vector instead of using the index."""
    from .analysis import embed_query, search
    from .ingest.scan import NotRegularFile, read_regular

    if sum(q is not None for q in (image_id, text, file)) != 1:
        raise OptionError("give exactly one of --image ID, --text TEXT or --file PATH")
    if not 1 <= k <= 1000:
        raise OptionError("-k must be between 1 and 1000")
    if image_id is not None:
        if search.vector_of(db, image_id) is None:
            raise OptionError(f"image {image_id} is not in the database or has no vector")
        hits = search.similar(db, image_id, k, exact=exact)
    else:
        if text is not None:
            vec = embed_query.embed_text(db, text, model)
        else:
            try:
                data = read_regular(file)
            except NotRegularFile as e:
                raise OptionError(f"--file {display(file)} is {e.kind}, not an image file") from e
            except OSError as e:
                raise OptionError(f"cannot read --file {display(file)}: {e.strerror or e}") from e
            vec = embed_query.embed_file(db, data, os.path.basename(file), model)
        hits = search.knn(db, vec, k, exact=exact)
    out = []
    for iid, distance in hits:
        row = db.execute("SELECT path FROM files WHERE image_id = ? ORDER BY id LIMIT 1", [iid]).fetchone()
        out.append(SimilarImage(iid, 1 - distance, row[0] if row else None))
    return out


# --- descriptions ------------------------------------------------------------------------------


def describe(db: sqlite_utils.Database, *, model: str, url: str | None = None, api: str = "ollama",
             prompt: str | None = None, prompt_file: str | None = None, tags: bool = False,
             input: str = "thumbnail", max_side: int = 768, concurrency: int = 2, max_images: int | None = None,
             timeout: float = 120.0, retries: int = 3, backoff: float = 1.0, on_status: OnStatus | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> DescribeSummary:
    """Ask the vision LLM ``model`` on the server at ``url`` (``api`` 'ollama', default
    http://127.0.0.1:11434, or 'openai': an OpenAI-compatible chat-completions API, whose
    URL is needed) to describe every image that has no description for that model and
    prompt (``prompt`` text or ``prompt_file``; default the package's prompt), sending the
    stored thumbnail or (``input`` 'original') the file decoded at up to ``max_side`` px.
    ``tags`` asks for JSON with tags too. The API key is read from the environment only
    (IMAGECLUST_API_KEY, or OPENAI_API_KEY for 'openai'). A failed request is retried
    ``retries`` times after a random wait of up to ``backoff`` * 2**(attempt-1) seconds (or
    the server's Retry-After). Incremental and resumable: see
    :mod:`.analysis.describe`; an interrupted run returns with ``interrupted`` set."""
    from .analysis import describe as describing
    from .analysis import vlm

    _check_describe_options(url, api, prompt, prompt_file, input, max_side, concurrency, max_images, timeout,
                            retries)
    if prompt_file is not None:
        prompt = describing.read_prompt_file(prompt_file)
    text = describing.full_prompt(prompt, tags)
    client = vlm.make_client(api, url, model, timeout=timeout, retries=retries, backoff=backoff)
    return describing.describe_images(db, client, prompt=text, tags=tags, input=input, max_side=max_side,
                                      concurrency=concurrency, max_images=max_images, on_status=on_status or _quiet,
                                      on_progress=on_progress or (lambda done, total: None))


def _check_describe_options(url: str | None, api: str, prompt: str | None, prompt_file: str | None, input: str,
                            max_side: int, concurrency: int, max_images: int | None, timeout: float,
                            retries: int) -> None:
    from urllib.parse import urlsplit

    from .analysis import describe as describing
    from .analysis import vlm

    if api not in vlm.APIS:
        raise OptionError(f"--api must be one of {', '.join(vlm.APIS)}")
    if api == "openai" and not url:
        raise OptionError("--api openai needs --url (e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1)")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OptionError(f"--url must be an http:// or https:// URL, not {url!r}")
        if parts.username or parts.password:
            # A key typed on the command line ends up in shell histories and process lists.
            raise OptionError("--url must not hold credentials: put the API key in IMAGECLUST_API_KEY")
    if prompt is not None and prompt_file is not None:
        raise OptionError("give --prompt or --prompt-file, not both")
    if input not in describing.INPUTS:
        raise OptionError(f"--input must be one of {', '.join(describing.INPUTS)}")
    if not 64 <= max_side <= 4096:
        raise OptionError("--max-side must be between 64 and 4096")
    if not 1 <= concurrency <= 64:
        raise OptionError("--concurrency must be between 1 and 64")
    if max_images is not None and max_images < 1:
        raise OptionError("--max-images must be at least 1")
    if not timeout > 0:
        raise OptionError("--timeout must be more than 0")
    if not 0 <= retries <= 20:
        raise OptionError("--retries must be between 0 and 20")


def export(db: sqlite_utils.Database, format: str, out: str | os.PathLike, *, run: str | None = None,
           clusters: list[int] | None = None, sql: str | None = None, force: bool = False, **options) -> dict:
    """Write ``run``'s images (of ``clusters``, ``sql``'s image_ids) to ``out`` as ``format`` (:mod:`.export`)."""
    from .export import run as exporting

    return exporting.export(db, format, out, run=run, clusters=clusters, sql=sql, force=force, **options)
