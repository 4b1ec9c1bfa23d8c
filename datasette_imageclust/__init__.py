"""datasette-imageclust: folders of images -> one SQLite database -> Datasette.

The library API (import what you need):

- :mod:`datasette_imageclust.pipeline`: one function per step (load, build_index,
  cluster_images, find_duplicates, build_map, find_similar), as the ``imageclust`` commands run them
- :func:`datasette_imageclust.store.connection.connect` / ``close`` (sqlite-vec loaded)
- :mod:`datasette_imageclust.models` (finding and running ONNX embedders)

The Datasette hooks live in :mod:`datasette_imageclust.web`.
"""
__version__ = "0.1.0"
