"""A Dask worker preload (``dask worker --preload dask_poison``): decoding a file whose
name ends in ``poison.png`` kills the worker process at once, as a decoder crash or the
kernel's OOM killer would. Only the crash is added; the rest of the worker is real."""
import os

from datasette_imageclust.ingest import stages

_decode = stages.decode


def _deadly(data, *args, name=None, **kw):
    if name and name.endswith("poison.png"):
        os._exit(70)
    return _decode(data, *args, name=name, **kw)


stages.decode = _deadly
