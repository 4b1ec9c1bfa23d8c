"""Exports: the selected images of a database written as files other tools read.

Between :mod:`..pipeline` and :mod:`..analysis`: it reads through :mod:`..store` and
:mod:`..analysis`, never :mod:`..cli` or :mod:`..web` (they call ``pipeline.export``).

* :mod:`.selection` which images (a run, ``--cluster``, ``--sql``);
* :mod:`.atomic` a temporary name, renamed onto the output only when complete;
* one module per family of formats, each with ``write(db, selection, out, **options) -> dict``:
  :mod:`.tabular` (csv, json, parquet), :mod:`.archive` (folder, zip), :mod:`.network`
  (gexf, graphml), :mod:`.figure` and :mod:`.contact` (pictures and PDFs).
"""
