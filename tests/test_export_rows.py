"""`load --from` on exports no format knows, mapped by flags, and on hostile ones: nothing
lost, nothing silent. Real files, a real SQLite database, the real image server and the
stand-in embedder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from datasette_imageclust.cli import cli
from datasette_imageclust.ingest.exportfiles import sniff_delimiter
from datasette_imageclust.ingest.exports import read_export, typed
from datasette_imageclust.ingest.formats.base import hashtag_list, iso_utc, tags_in, values_at
from datasette_imageclust.pipeline_posts import load_export
from dbrows import rows
from imageserver import ImageServer
from test_load_export import FAST


@pytest.fixture
def server(tux_dir):
    files = sorted((tux_dir / "fruit").glob("*.jpg"))[:4]
    with ImageServer({f"{c}.jpg": f.read_bytes() for c, f in zip("abcd", files)}) as s:
        yield s


def test_duplicate_post_ids_merge_their_links_and_are_counted(tmp_path, server, stand_in_model):
    b = server.base
    export = tmp_path / "dupes.ndjson"
    lines = [
        {"id": "p1", "media": [f"{b}/img/a.jpg"], "user": "alice", "created_at": 1709374272, "text": "one"},
        {"id": "p2", "media": [f"{b}/img/b.jpg"], "user": "bob"},
        # p1 again (a capture that saw the post twice), with a second image and the first again.
        {"id": "p1", "media": [f"{b}/img/a.jpg", f"{b}/img/c.jpg"], "user": "alice", "hashtags": ["#Cats"]},
        {"id": "p1", "media": [f"{b}/img/d.jpg"]},
    ]
    export.write_text("".join(json.dumps(line) + "\n" for line in lines))
    db = str(tmp_path / "d.db")
    s = load_export(db, str(export), url_column="media", id_column="id", limits=FAST, model=stand_in_model)
    assert (s.posts, s.merged, s.links, s.urls, s.fetched) == (2, 2, 4, 4, 4)
    # The summary's numbers are the tables'.
    assert rows(db, "select count(*) from posts") == [(s.posts,)]
    assert rows(db, "select count(*) from post_images") == [(s.links,)]
    assert rows(db, "select url from post_images pi join posts p on p.id = pi.post where p.post_id = 'p1' "
                    "order by position") == [(f"{b}/img/a.jpg",), (f"{b}/img/c.jpg",), (f"{b}/img/d.jpg",)]
    # The first row's fields, filled from later rows where it had none.
    assert rows(db, "select author, created, text, hashtags, image_count from posts where post_id = 'p1'") == [
        ("alice", "2024-03-02T10:11:12Z", "one", '["cats"]', 3)]


def test_hostile_rows_are_one_error_each_and_the_rest_loads(tmp_path, server, stand_in_model):
    b = server.base
    deep = "[" * 1000 + "]" * 1000
    many = {f"k{i}": i for i in range(3000)}
    export = tmp_path / "hostile.ndjson"
    export.write_text("\n".join([
        json.dumps({"id": "ok1", "img": f"{b}/img/a.jpg", "big": 2**70, "small": -2**63}),
        '{"id": "deep", "img": "' + b + '/img/b.jpg", "body": ' + deep + "}",
        json.dumps({"id": "nul", "img": f"{b}/img/b.jpg", "bad\u0000key": 1}),
        json.dumps({"id": "wide", "img": f"{b}/img/b.jpg", **many}),
        json.dumps({"id": "ok2", "img": f"{b}/img/c.jpg"}),
    ]) + "\n")
    db = str(tmp_path / "h.db")
    s = load_export(db, str(export), url_column="img", id_column="id", all_columns=True, limits=FAST,
                    model=stand_in_model)
    errors = dict(rows(db, "select row, reason from export_errors"))
    assert sorted(errors) == [2, 3, 4]
    assert errors[2] == "not JSON: nested too deeply"
    assert "NUL" in errors[3]
    assert errors[4] == "cannot be stored: 3000 new columns in one row (at most 200)"
    assert (s.posts, s.bad_rows) == (2, 3)
    # An integer SQLite cannot hold is kept as its text; one it can, as a number.
    assert rows(db, "select big, typeof(big), small, typeof(small) from posts where post_id = 'ok1'") == [
        (str(2**70), "text", -2**63, "integer")]
    assert rows(db, "select post_id from posts order by row") == [("ok1",), ("ok2",)]
    assert len([c for (c,) in rows(db, "select name from pragma_table_info('posts')") if c.startswith("k")]) == 0


def test_a_semicolon_csv_is_sniffed_and_star_paths_reach_lists_of_objects(tmp_path):
    csv_file = tmp_path / "semi.csv"
    csv_file.write_text('id;image;author\n1;"https://x/1.jpg";"alice"\n2;https://x/2.jpg;bob\n', encoding="utf-8-sig")
    got = [(r.post_id, r.urls, r.post.author) for r in read_export(str(csv_file), url_column="image",
                                                                   id_column="id")]
    assert got == [("1", ["https://x/1.jpg"], "alice"), ("2", ["https://x/2.jpg"], "bob")]
    assert (sniff_delimiter('a;b;"c,d"'), sniff_delimiter("a,b;c,d"), sniff_delimiter("a\tb"), sniff_delimiter("a")) \
        == (";", ",", "\t", ",")
    # Read with the wrong delimiter, the header is one column: the error says so.
    from datasette_imageclust.ingest.exports import ExportError

    with pytest.raises(ExportError, match="the header reads as one column: give --delimiter"):
        read_export(str(csv_file), url_column="image", delimiter=",")
    carousel = tmp_path / "ig.ndjson"
    carousel.write_text(json.dumps({"data": {"code": "C1", "carousel_media": [
        {"image_versions2": {"candidates": [{"url": "https://x/a.jpg"}, {"url": "https://x/a-small.jpg"}]}},
        {"image_versions2": {"candidates": [{"url": "https://x/b.jpg"}]}}]}}) + "\n")
    got = list(read_export(str(carousel), url_column="data.carousel_media[*].image_versions2.candidates[0].url",
                           id_column="data.code"))
    assert [(r.post_id, r.urls) for r in got] == [("C1", ["https://x/a.jpg", "https://x/b.jpg"])]


def test_a_cell_of_joined_urls_gets_a_hint(tmp_path, server, stand_in_model):
    export = tmp_path / "joined.csv"
    export.write_text(f'id,urls\n1,"{server.base}/img/a.jpg,{server.base}/img/b.jpg"\n')
    result = CliRunner().invoke(cli, ["load", str(tmp_path / "j.db"), "--from", str(export), "--url-column", "urls",
                                      "--allow-private", "--model", stand_in_model])
    assert "note: the column 'urls' holds several URLs in one cell" in result.output
    assert "give --separator" in result.output


def test_normalising_rules():
    assert [iso_utc(v) for v in (1709374272, "1709374272000", 1709374272.5, "Sat Mar 02 10:11:12 +0000 2024",
                                 "2024-03-02 10:11:12", "2024-03-02T12:11:12+02:00", "2024-03-02", "yesterday",
                                 "Sat, 02 Mar 2024 11:11:12 +0100", "Sat, 99 Foo",
                                 None, True, 0, "")] == [
        "2024-03-02T10:11:12Z", "2024-03-02T10:11:12Z", "2024-03-02T10:11:12Z", "2024-03-02T10:11:12Z",
        "2024-03-02T10:11:12Z", "2024-03-02T10:11:12Z", "2024-03-02", None, "2024-03-02T10:11:12Z", None,
        None, None, None, None]
    assert hashtag_list("cats; dogs; Cats") == ["cats", "dogs"]  # TCAT's "; " joins
    assert hashtag_list("cats,dogs") == ["cats", "dogs"]  # 4CAT's ","
    assert hashtag_list("#a #b") == ["a", "b"]
    assert hashtag_list([{"title": "x"}, {"name": "Y"}, "#z", 5]) == ["x", "y", "z"]
    assert hashtag_list('["a", "#b"]') == ["a", "b"]
    assert tags_in("#Cats on a mat, #dogs too #cats.") == ["cats", "dogs"]
    assert tags_in("#" + "a" * 200, longest=150) == ["a" * 150] and tags_in(None) == []
    rec = {"a": [{"b": [1, 2]}, {"b": [3]}], "a.b": "whole"}
    assert values_at(rec, "a[*].b[0]") == [1, 3]
    assert values_at(rec, "a[*].b[*]") == [1, 2, 3]
    assert values_at(rec, "a.b") == ["whole"]  # a key the record has whole wins
    assert values_at(rec, "a[5].b") == []
    assert typed(2**63) == str(2**63) and typed(2**63 - 1) == 2**63 - 1


def test_formats_lists_every_format_with_its_fields():
    result = CliRunner().invoke(cli, ["formats", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    from datasette_imageclust.ingest import formats

    assert [f["name"] for f in found] == [f.name for f in formats.ALL]
    for f in found:
        assert f["fields"] and f["source"], f["name"]  # every format says what it reads, and from which source


def test_a_run_that_loads_nothing_exits_1_saying_why(tmp_path, stand_in_model):
    export = tmp_path / "none.csv"
    export.write_text("id,image\n1,\n2,\n")
    result = CliRunner().invoke(cli, ["load", str(tmp_path / "n.db"), "--from", str(export), "--url-column", "image",
                                      "--model", stand_in_model])
    assert result.exit_code == 1
    assert "Error: the 2 posts of none.csv hold no image URLs (is --url-column the column of image URLs?)" \
        in result.output


def test_empty_exports_say_so(tmp_path, stand_in_model):
    export = tmp_path / "bad.ndjson"
    export.write_text("not json\n[1]\n")
    result = CliRunner().invoke(cli, ["load", str(tmp_path / "b.db"), "--from", str(export), "--url-column", "x",
                                      "--model", stand_in_model])
    assert result.exit_code == 1
    assert "Error: no post could be read from bad.ndjson (2 unreadable rows: see the export_errors table)" \
        in result.output
    assert Path(tmp_path / "b.db").exists()  # what was learnt (the unreadable rows) is kept
    assert rows(str(tmp_path / "b.db"), "select row from export_errors order by row") == [(1,), (2,)]
