"""The web download's CSV (/<db>/-/imageclust/export?format=csv) through a real Datasette:
it carries each image's first post, and no cell runs as a spreadsheet formula (the rule of
store/csvsafe.py, which every CSV of the package follows). Run under Datasette 0.65 and 1.0."""
from __future__ import annotations

import csv

import pytest

from exportpostsdb import EVIL_LABEL, HYPER, make_posts_db
from test_plugin_pages import make_ds

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def posts_db(tmp_path_factory) -> str:
    return make_posts_db(str(tmp_path_factory.mktemp("webcsv") / "posts.db"))


async def test_web_csv_download_is_neutralised_and_carries_the_post(posts_db):
    ds = make_ds([posts_db])
    r = await ds.client.get("/posts/-/imageclust/export?format=csv")
    assert r.status_code == 200, r.text[:300]
    rows = {int(row["image_id"]): row for row in csv.DictReader(r.text.splitlines())}
    assert rows[2]["author"] == "'" + HYPER and rows[1]["author"] == "alice"
    assert rows[1]["cluster_label"] == "'" + EVIL_LABEL
    assert (rows[1]["url"], rows[1]["post_url"], rows[1]["created"], rows[1]["posts"]) == (
        "https://cdn.example/p2-a.jpg", "https://www.instagram.com/p/B2/", "2024-03-01T08:00:00Z", "4")


async def test_web_csv_download_without_the_posts_tables(posts_db):
    """An actor who may not view posts gets the post columns empty, the rule all the same."""
    ds = make_ds([posts_db], databases={"posts": {"tables": {"posts": {"allow": False}}}})
    r = await ds.client.get("/posts/-/imageclust/export?format=csv")
    assert r.status_code == 200, r.text[:300]
    rows = {int(row["image_id"]): row for row in csv.DictReader(r.text.splitlines())}
    assert rows[2]["author"] == rows[2]["url"] == rows[2]["posts"] == ""
    assert rows[1]["cluster_label"] == "'" + EVIL_LABEL
