"""`datasette photos.db` opens what `load` wrote, vec0 tables included (issue: load)."""
from __future__ import annotations

import os

import pytest
from datasette.app import Datasette


@pytest.mark.asyncio
@pytest.mark.parametrize("immutable", [False, True])
async def test_datasette_reads_loaded_database(tux_db, immutable):
    ds = Datasette(immutables=[tux_db]) if immutable else Datasette([tux_db])
    name = os.path.splitext(os.path.basename(tux_db))[0]
    r = await ds.client.get(f"/{name}.json")
    assert r.status_code == 200
    tables = {t["name"] for t in r.json()["tables"]}
    assert {"images", "files", "thumbnails", "errors", "models", "image_vectors"} <= tables
    # sqlite-vec is loaded into Datasette's connections: a KNN query by image id works in SQL
    sql = ("select v.image_id, v.distance from image_vectors v where v.embedding match "
           "(select embedding from image_vectors where image_id = 1) and k = 5")
    # (Datasette 1.0 redirects /db.json?sql= to /db/-/query.json)
    r = await ds.client.get(f"/{name}.json", params={"sql": sql, "_shape": "array"}, follow_redirects=True)
    assert r.status_code == 200, r.text
    rows = r.json()
    assert len(rows) == 5 and rows[0]["image_id"] == 1 and rows[0]["distance"] < 1e-5
    r = await ds.client.get(f"/{name}/images.json", params={"_shape": "array", "_size": 3})
    assert r.status_code == 200 and len(r.json()) == 3
