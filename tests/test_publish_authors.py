"""``publish-copy --authors``: authors are personal data. A posts database written directly
(tests/postsdb.py) with the authors' names in posts.author, kept author-like columns,
mentions, texts, permalinks, a description, cluster labels, a note and a tag; the copy is
made by the real command and read back as bytes and with SQL."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from datasette_imageclust.cli import cli
from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store.schema import migrate
from dbrows import rows as sql
from postsdb import clusters, make_posts_db

# Every spelling of a person in the source: handles (any case), a full name, a mentioned
# handle, a user id kept from the export.
NAMES = ("alice_wonder", "bob_builder", "carol_singer", "Alice Wonderland", "dave_mention")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("authors") / "source.db")
    make_posts_db(path, extra_columns={"author_fullname": ("Alice Wonderland", "Bob Builder-Smith"),
                                       "from_user_id": (1001, 1002),
                                       "mentions": ('["dave_mention"]', "[]")})
    db = dbmod.connect(path)
    migrate(db, "text")
    migrate(db, "curation")
    groups = list(clusters(path))
    with db.conn:
        db.execute("UPDATE posts SET text = text || ' cc @Dave_Mention' WHERE author = 'alice_wonder'")
        db.execute("UPDATE clusters SET label = 'ALICE_WONDER cats' WHERE id = ?", [groups[0]])
        db.execute("INSERT INTO cluster_labels (cluster_id, source, label, detail, created) "
                   "VALUES (?, 'user', 'posted by bob_builder', '{}', 'now')", [groups[1]])
        db.execute("INSERT INTO cluster_notes (cluster_id, note) VALUES (?, 'ask Carol_Singer about this')",
                   [groups[1]])
        pid = db.execute("INSERT INTO prompts (sha256, text, created) VALUES ('x', 'describe', 'now')").lastrowid
        db.execute("INSERT INTO descriptions (image_id, model, api, prompt_id, text, input, created) "
                   "VALUES (1, 'llava', 'ollama', ?, 'A cat held up by @alice_wonder, text reads bob_builder', "
                   "'thumbnail', 'now')", [pid])
        db.execute("INSERT INTO image_tags (image_id, source, tag, rank, created) VALUES (2, 'vlm', 'Alice Wonderland', 1, 'now')")
    dbmod.close(db)
    for n in NAMES:  # the source does hold them all
        assert n.lower().encode() in open(path, "rb").read().lower(), n
    return path


def _copy(source: str, dest: str, *args: str) -> dict:
    r = CliRunner().invoke(cli, ["publish-copy", source, dest, "--json", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.strip().splitlines()[-1])


def _meta(path: str) -> dict:
    return json.loads(sql(path, "select value from imageclust_meta where key = 'redacted'")[0][0])


def _no_names_in_bytes(path: str, names=NAMES) -> None:
    data = open(path, "rb").read().lower()
    for n in names:
        for part in {n.lower(), n.lower().replace(" ", "")}:
            assert part.encode() not in data, (n, path)


def test_pseudonymise_is_the_default_and_leaves_no_name(source, tmp_path):
    out = str(tmp_path / "pub.db")
    s = _copy(source, out)
    assert s["authors"] == "pseudonymise" and s["author_values"] > 0
    _no_names_in_bytes(out, (*NAMES, "Bob Builder-Smith"))
    # One person, one pseudonym, in every table: posts.author, the text that mentions them,
    # the cluster label, the description.
    authors = dict(sql(out, "select post_id, author from posts"))
    (alice,) = {authors[f"P{i}"] for i in clusters(out)[list(clusters(out))[0]]}
    (bob,) = {authors[f"P{i}"] for i in clusters(out)[list(clusters(out))[1]]}
    assert re.fullmatch(r"author-[0-9a-f]{16}", alice) and re.fullmatch(r"author-[0-9a-f]{16}", bob) and alice != bob
    texts = [t for (t,) in sql(out, "select text from posts where author = ?", [bob])]
    assert texts and all(t == f"Golden sunset over the harbour, thanks {alice}" for t in texts)
    cid = list(clusters(out))[0]
    assert sql(out, "select label from clusters where id = ?", [cid])[0][0] == f"{alice} cats"
    (desc,) = sql(out, "select text from descriptions")[0]
    assert desc == f"A cat held up by @{alice}, text reads {bob}"
    # Bob's handle in mixed case is Bob everywhere; a mention of someone not posting gets a pseudonym too.
    (note,) = sql(out, "select note from cluster_notes")[0]
    assert note.startswith("ask author-") and "carol" not in note.lower()
    mention = re.search(r"cc @(author-[0-9a-f]{16})", sql(out, "select text from posts where author = ?", [alice])[0][0])
    assert mention and sql(out, "select mentions from posts where author = ?", [alice])[0][0] == f'["{mention.group(1)}"]'
    # Kept author-like columns: the whole value (the user id too).
    full = {a: f for a, f in sql(out, "select author, author_fullname from posts")}
    assert re.fullmatch(r"author-[0-9a-f]{16}", full[alice]) and full[alice] != alice
    ids = {u for (u,) in sql(out, "select from_user_id from posts") if u is not None}
    assert len(ids) == 2 and all(re.fullmatch(r"author-[0-9a-f]{16}", u) for u in ids)
    # A permalink naming the author is removed; one without a name kept.
    links = dict(sql(out, "select author, permalink from posts"))
    assert links[alice] is None and links[bob].startswith("https://www.instagram.com/p/")
    # What was done is recorded (no salt in it); the image page says so.
    meta = _meta(out)["authors"]
    assert meta["mode"] == "pseudonymise" and {"author", "author_fullname", "from_user_id"} <= set(meta["columns"])
    assert "salt" not in json.dumps(meta)
    # The copy is still a working database.
    assert sql(out, "pragma integrity_check") == [("ok",)]
    assert sql(out, "select count(*) from posts") == sql(source, "select count(*) from posts")


def test_each_copy_has_its_own_salt(source, tmp_path):
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    _copy(source, a)
    _copy(source, b)
    pa = {p: x for p, x in sql(a, "select post_id, author from posts")}
    pb = {p: x for p, x in sql(b, "select post_id, author from posts")}
    assert pa.keys() == pb.keys() and all(pa[k] != pb[k] for k in pa)
    # ... consistent within each copy: as many distinct pseudonyms as distinct authors.
    assert len(set(pa.values())) == len(set(pb.values())) == len({x for (x,) in sql(source, "select author from posts")})


def test_drop_removes_the_names(source, tmp_path):
    out = str(tmp_path / "drop.db")
    s = _copy(source, out, "--authors", "drop")
    assert s["authors"] == "drop"
    _no_names_in_bytes(out)
    assert sql(out, "select count(*) from posts where author is not null or author_fullname is not null") == [(0,)]
    for (t,) in sql(out, "select text from posts"):
        assert "@" not in t and "author-" not in t
    (desc,) = sql(out, "select text from descriptions")[0]
    assert desc == "A cat held up by , text reads "
    assert _meta(out)["authors"]["mode"] == "drop"


def test_keep_keeps_them(source, tmp_path):
    out = str(tmp_path / "keep.db")
    s = _copy(source, out, "--authors", "keep")
    assert s["authors"] == "keep"
    assert sql(out, "select post_id, author, text, permalink from posts order by id") == \
        sql(source, "select post_id, author, text, permalink from posts order by id")
    assert _meta(out)["authors"]["mode"] == "keep"


def test_the_image_page_says_authors_were_pseudonymised(source, tmp_path):
    import asyncio

    from test_plugin_pages import get_json, make_ds

    out = str(tmp_path / "pub.db")
    _copy(source, out)
    d = asyncio.run(get_json(make_ds([out]), "/pub/-/imageclust/image/1.json"))
    assert d["redacted"].endswith("authors pseudonymised")
    assert d["name"].startswith("@author-")


def test_a_name_left_where_no_rule_reaches_refuses_the_copy(source, tmp_path):
    import shutil

    # image_tags.source is the package's own vocabulary, never rewritten: the byte check
    # must find the name there (in another case) and refuse, writing nothing.
    src = str(tmp_path / "odd.db")
    shutil.copy(source, src)
    db = dbmod.connect(src)
    with db.conn:
        db.execute("UPDATE image_tags SET source = 'tagged-by-ALICE_WONDER'")
    dbmod.close(db)
    out = tmp_path / "odd-pub.db"
    r = CliRunner().invoke(cli, ["publish-copy", src, str(out)])
    assert r.exit_code == 1 and "author name 'alice_wonder'" in r.output, r.output
    assert not out.exists() and not list(tmp_path.glob(".odd-pub.db*"))


def test_another_author_column_is_named_with_author_column(source, tmp_path):
    import shutil

    src = str(tmp_path / "poster.db")
    shutil.copy(source, src)
    db = dbmod.connect(src)
    with db.conn:
        db.execute('ALTER TABLE posts ADD COLUMN "poster"')
        db.execute("UPDATE posts SET poster = 'erin_photographer'")
    dbmod.close(db)
    # Not named like an author column: without the option it is an ordinary column, kept.
    _copy(src, str(tmp_path / "no.db"))
    assert sql(str(tmp_path / "no.db"), "select distinct poster from posts") == [("erin_photographer",)]
    out = str(tmp_path / "yes.db")
    _copy(src, out, "--author-column", "POSTER")
    _no_names_in_bytes(out, (*NAMES, "erin_photographer"))
    (poster,) = {p for (p,) in sql(out, "select poster from posts")}
    assert re.fullmatch(r"author-[0-9a-f]{16}", poster) and "poster" in _meta(out)["authors"]["columns"]
    r = CliRunner().invoke(cli, ["publish-copy", src, str(tmp_path / "bad.db"), "--author-column", "nonesuch"])
    assert r.exit_code == 1 and "posts has no column 'nonesuch'" in r.output, r.output


def test_an_account_named_like_the_platform_or_the_schema(tmp_path):
    # "instagram" posting on Instagram, and "hashtags" (a column name): pseudonymised in
    # the author column, while the platform's URLs and the schema stay whole.
    src = make_posts_db(str(tmp_path / "src.db"))
    db = dbmod.connect(src)
    with db.conn:
        db.execute("UPDATE posts SET author = 'Instagram' WHERE author = 'alice_wonder'")
        db.execute("UPDATE posts SET author = 'hashtags' WHERE author = 'Bob_Builder'")
    dbmod.close(db)
    out = str(tmp_path / "pub.db")
    _copy(src, out)
    assert all(re.fullmatch(r"author-[0-9a-f]{16}", a) for (a,) in sql(out, "select author from posts"))
    assert {p for (p,) in sql(out, "select platform from posts")} == {"instagram"}
    assert sql(out, "select count(*) from posts where permalink like 'https://www.instagram.com/p/%'") == \
        sql(src, "select count(*) from posts where permalink like 'https://www.instagram.com/p/%'")
