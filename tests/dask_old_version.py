"""A Dask worker preload (``dask worker --preload dask_old_version``): this worker's
installed datasette-imageclust reports version 0.0.1, as a worker left on an old release.
Only the installed metadata is swapped (a dist-info first on sys.path); the code is real."""
import sys
import tempfile
from pathlib import Path

_site = Path(tempfile.mkdtemp(prefix="old-imageclust-"))
_info = _site / "datasette_imageclust-0.0.1.dist-info"
_info.mkdir()
(_info / "METADATA").write_text("Metadata-Version: 2.1\nName: datasette-imageclust\nVersion: 0.0.1\n")
sys.path.insert(0, str(_site))
