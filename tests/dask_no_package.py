"""A Dask worker preload (``dask worker --preload dask_no_package``): this worker cannot
import datasette_imageclust, as a worker where the package was never installed."""
import sys


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "datasette_imageclust":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None  # anything else: the usual finders


for _name in [m for m in sys.modules if m.split(".")[0] == "datasette_imageclust"]:
    del sys.modules[_name]
sys.meta_path.insert(0, _NotInstalled())
