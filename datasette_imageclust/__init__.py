"""datasette-imageclust: folders of images -> one SQLite database -> Datasette.

The library API (import what you need):

- :func:`datasette_imageclust.ingest.loader.load` / :class:`~datasette_imageclust.ingest.loader.Loader`
- :func:`datasette_imageclust.store.connection.connect` (sqlite-vec loaded)
- :mod:`datasette_imageclust.models` (finding and running ONNX embedders)

The Datasette hooks live in :mod:`datasette_imageclust.web`.
"""
__version__ = "0.1.0"
