"""`cluster --on descriptions|tags` on the labelled tuxpaint stamps, with descriptions and
tags written per category (tests/synthtext.py), a tiny sentence model and a tiny CLIP:
clusters follow what the texts say, the TF-IDF labels name it, runs sit side by side."""
from __future__ import annotations

import csv
import json
import random
import shutil
from collections import Counter

import pytest
from click.testing import CliRunner

from datasette_imageclust import pipeline
from datasette_imageclust.cli import cli
from datasette_imageclust.store.collection import ImageCollection
from datasette_imageclust.store.connection import connect
from datasette_imageclust.store.schema import migrate, now
from synthtext import CATEGORY_WORDS, describe
from synthtext import WORDS as DESCRIPTION_WORDS

FAST = ("--no-duplicates", "--no-layout")
LEFT_OUT = 5  # images given no description


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def categories(db, tux_dir) -> dict[int, str]:
    labels = {r["path"]: r["category"] for r in csv.DictReader(open(tux_dir / "labels.csv"))}
    return {iid: labels[rel] for iid, rel in db.execute("SELECT image_id, relpath FROM files")}


def add_descriptions(db, cats: dict[int, str], model: str = "llava", created: str | None = None,
                     skip: int = 0, text=describe) -> list[int]:
    migrate(db, "text")
    rng = random.Random(model)
    with db.conn:
        db.execute("INSERT OR IGNORE INTO prompts (id, sha256, text, created) VALUES (1, 'p1', 'Describe.', ?)", [now()])
        ids = sorted(cats)[skip:]
        for iid in ids:
            db.execute("INSERT INTO descriptions (image_id, model, api, prompt_id, text, input, created) "
                       "VALUES (?, ?, 'ollama', 1, ?, 'thumbnail', ?)", [iid, model, text(cats[iid], rng), created or now()])
    return ids


@pytest.fixture
def described(tux_db, tux_dir, tmp_path):
    """tux_db with one description per image (but the first LEFT_OUT), by 'llava'."""
    p = tmp_path / "d.db"
    shutil.copy(tux_db, p)
    db = connect(str(p))
    cats = categories(db, tux_dir)
    add_descriptions(db, cats, skip=LEFT_OUT)
    db.close()
    return str(p), cats


def clusters_of(db, run_name):
    coll = ImageCollection(db)
    rid = coll.run(run_name)["id"]
    out = []
    for cid, label in db.execute("SELECT id, label FROM clusters WHERE run_id = ? AND kind = 'cluster'", [rid]):
        members = [r[0] for r in db.execute("SELECT image_id FROM cluster_members WHERE cluster_id = ?", [cid])]
        out.append((cid, label, members))
    return out


def named_share(db, run_name, cats, words=CATEGORY_WORDS):
    """Share of the run's clusters whose label's first term is a word of their main category."""
    got = clusters_of(db, run_name)
    ok = sum((label or "").split(", ")[0] in words[Counter(cats[i] for i in m).most_common(1)[0][0]]
             for _, label, m in got)
    return ok / max(len(got), 1), got


def test_cluster_on_descriptions_labels_name_what_they_say(described, tiny_sentence):
    path, cats = described
    r = run("cluster", path, "--on", "descriptions", "--text-model", tiny_sentence, "--name", "desc", "--json", *FAST)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["source"], s["images"], s["left_out"]) == ("descriptions", 353 - LEFT_OUT, LEFT_OUT)
    assert f"{LEFT_OUT} images without descriptions are left out of this run" in r.stderr
    assert f"embedding {353 - LEFT_OUT} descriptions with sentence text model" in r.stderr
    db = connect(path)
    share, got = named_share(db, "desc", cats)
    assert len(got) >= 16 and share >= 0.9, [(label, Counter(cats[i] for i in m)) for _, label, m in got]
    purity = sum(Counter(cats[i] for i in m).most_common(1)[0][1] for _, _, m in got) / sum(len(m) for _, _, m in got)
    assert purity >= 0.9
    labels = ImageCollection(db).labels([c for c, _, _ in got])
    assert all(ls[0]["source"] == "terms" and ls[0]["detail"]["from"] == "descriptions" for ls in labels.values())
    run_row = ImageCollection(db).run("desc")
    params = json.loads(run_row["params"])
    assert run_row["source"] == "descriptions"
    assert params["text_model"]["kind"] == "sentence" and params["describer"] is None
    assert params["descriptions_used"] == {"llava / prompt 1": 353 - LEFT_OUT}
    tid = params["text_model"]["id"]
    assert db.execute(f"SELECT count(*) FROM description_vectors_{tid}").fetchone()[0] == 353 - LEFT_OUT
    # Clustering again costs no embedding: the vectors are stored with their model.
    r = run("cluster", path, "--on", "descriptions", "--text-model", tiny_sentence, "--name", "desc2", "--json", *FAST)
    assert json.loads(r.stdout)["details"]["embedded_now"] == {"descriptions": 0, "truncated": 0}
    assert "embedding" not in r.stderr
    assert db.execute("SELECT count(*) FROM text_models").fetchone()[0] == 1


def test_the_papers_recipe_umap_hdbscan(described, tiny_sentence):
    path, cats = described
    r = run("cluster", path, "--on", "descriptions", "--method", "hdbscan", "--text-model", tiny_sentence,
            "--json", *FAST)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["info"]["reduction"] == "umap" and s["info"]["reduced_dimensions"] == 5
    assert s["unclustered"] <= 0.2 * s["images"]
    share, got = named_share(connect(path), "default", cats)
    assert len(got) >= 12 and share >= 0.9


@pytest.mark.parametrize("on,extra", [("descriptions", ("--text-model", "SENTENCE")),
                                      ("tags", ("--tag-source", "vlm:llava"))])
@pytest.mark.parametrize("method", [("--method", "kmeans", "--clusters", "16"), ("--clusters", "16"),
                                    ("--max-size", "15", "--small", "merge", "--knn", "0", "--seed", "3")])
def test_every_method_and_option_on_text(described, tiny_sentence, on, extra, method):
    path, cats = described
    if on == "tags":
        add_tags(connect(path), cats)
    extra = [tiny_sentence if e == "SENTENCE" else e for e in extra]
    r = run("cluster", path, "--on", on, *extra, *method, "--name", "t",
            "--representatives", "2", "--json", *FAST)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["source"] == on and s["clusters"] >= 10
    params = json.loads(ImageCollection(connect(path)).run("t")["params"])
    for opt, key in (("--clusters", "n_clusters"), ("--max-size", "max_size"), ("--seed", "seed"), ("--knn", "knn_k")):
        if opt in method:
            assert params[key] == int(method[method.index(opt) + 1])


def add_tags(db, cats, source="vlm:llava"):
    """Two of the category's words as tags, and two shared ones, per image."""
    rng = random.Random(1)
    with db.conn:
        for iid, cat in cats.items():
            for rank, tag in enumerate(rng.sample(CATEGORY_WORDS[cat], 2) + rng.sample(["clip art", "drawing",
                                                                                          "cartoon", "icon"], 2), 1):
                db.execute("INSERT INTO image_tags (image_id, source, tag, score, rank, created) "
                           "VALUES (?, ?, ?, NULL, ?, ?)", [iid, source, tag, rank, now()])


def test_cluster_on_tags_with_tag_labels(described, tiny_sentence):
    path, cats = described
    db = connect(path)
    add_tags(db, cats)
    r = run("cluster", path, "--on", "tags", "--name", "tags", "--json", *FAST)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["source"] == "tags" and s["left_out"] == 0 and s["labels"].keys() == {"tags", "terms"}
    assert s["details"]["tag_source"] == "vlm:llava"
    assert s["details"]["tag_vectors"] == {"tags": 68, "images": 353, "dimensions": 68}
    share, got = named_share(db, "tags", cats)
    assert share >= 0.9
    labels = ImageCollection(db).labels([c for c, _, _ in got])
    assert all(ls[0]["source"] == "tags" and ls[0]["detail"]["source"] == "vlm:llava" for ls in labels.values())
    assert ImageCollection(db).run("tags")["source"] == "tags"


def test_clip_tags_cluster_and_label(tiny_clip_db, tmp_path):
    p = tmp_path / "c.db"
    shutil.copy(tiny_clip_db, p)
    db = connect(str(p))
    pipeline.tag(db, top=8)
    s = pipeline.cluster_images(db, on="tags", labels=["tags", "clip"], duplicates=False, layout=False)
    assert s.source == "tags" and s.images == 18 and s.details["tag_source"] == "clip"
    assert s.labels["tags"].endswith("clusters labelled") and s.labels["clip"].endswith("clusters labelled")
    vocab = set(__import__("datasette_imageclust.analysis.labels", fromlist=["x"]).vocabulary())
    for ls in ImageCollection(db).labels(c for c, _, _ in clusters_of(db, "default")).values():
        assert {lab["source"] for lab in ls} <= {"tags", "clip"}
        assert all(t in vocab for lab in ls for t in lab["label"].split(", "))


def test_runs_side_by_side_and_the_map_keeps_the_default(described, tiny_sentence):
    path, cats = described
    assert run("cluster", path, "--labels", "none", "--no-duplicates").exit_code == 0  # images; default; map
    r = run("cluster", path, "--on", "descriptions", "--text-model", tiny_sentence, "--name", "desc", *FAST)
    assert r.exit_code == 0, r.output
    runs = [json.loads(line) for line in run("clusters", path, "--runs", "--json").stdout.splitlines()]
    assert [(x["name"], x["source"], x["is_default"]) for x in runs] == \
        [("default", "images", True), ("desc", "descriptions", False)]
    assert "descriptions" in run("clusters", path, "--runs").stdout
    db = connect(path)
    layout = ImageCollection(db).layout()
    assert layout["run_id"] == ImageCollection(db).run("default")["id"]
    assert db.execute("SELECT count(*) FROM layout_points").fetchone()[0] == 353  # every image, described or not
    # The description run as the default: the map groups by its clusters, still over every image.
    r = run("cluster", path, "--on", "descriptions", "--text-model", tiny_sentence, "--name", "desc", "--default",
            "--labels", "none", "--no-duplicates")
    assert r.exit_code == 0, r.output
    layout = ImageCollection(db).layout()
    assert layout["run_id"] == ImageCollection(db).run("desc")["id"] and layout["n_images"] == 353


def test_choosing_descriptions_by_model(described, tiny_sentence):
    path, cats = described
    db = connect(path)
    # An older describer that only saw 40 images: not the default (each image's newest is llava's).
    add_descriptions(db, dict(list(sorted(cats.items()))[:40]), model="old-vlm", created="2000-01-01T00:00:00+00:00")
    db.close()  # (an open connection keeps the database in WAL mode, which the command would say)
    r = run("cluster", path, "--on", "descriptions", "--describer", "old-vlm", "--text-model", tiny_sentence,
            "--name", "old", "--json", *FAST)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["images"], s["left_out"], s["details"]["describer"]) == (40, 313, "old-vlm")
    r = run("cluster", path, "--on", "descriptions", "--describer", "gpt-9", "--text-model", tiny_sentence, *FAST)
    assert r.exit_code == 1
    (line,) = r.stderr.strip().splitlines()
    assert "no descriptions by model 'gpt-9'" in line and "old-vlm with prompt 1 (40 images)" in line
    r = run("cluster", path, "--on", "tags", *FAST)
    assert r.exit_code == 1 and "no tags: run `imageclust tag` first" in r.stderr
    r = run("cluster", path, "--on", "images", "--text-model", tiny_sentence, *FAST)
    assert r.exit_code == 1 and r.stderr.strip() == "Error: --text-model embeds descriptions: it goes with --on descriptions"


def test_one_message_when_there_is_no_text_model(described, tux_db, tmp_path):
    path, _ = described
    r = run("cluster", path, "--on", "descriptions", *FAST)  # the stand-in has no text tower
    assert r.exit_code == 1 and "Traceback" not in r.output
    (line,) = r.stderr.strip().splitlines()
    assert "cannot be embedded with the text tower of the database's model" in line
    assert "has no text model" in line and "--text-model DIR|HUB_ID" in line
    r = run("cluster", path, "--on", "descriptions", "--text-model", str(tmp_path / "nowhere"), *FAST)
    assert r.exit_code == 1 and "does not exist" in r.stderr
    plain = tmp_path / "plain.db"
    shutil.copy(tux_db, plain)
    r = run("cluster", plain, "--on", "descriptions", *FAST)
    assert r.exit_code == 1 and "has no descriptions: run `imageclust describe` first" in r.stderr


def test_clip_text_tower_truncates_honestly(tiny_clip_db, tmp_path):
    p = tmp_path / "c.db"
    shutil.copy(tiny_clip_db, p)
    db = connect(str(p))
    cats = {iid: rel.split("/")[0] for iid, rel in db.execute("SELECT image_id, relpath FROM files")}
    words = {"birds": CATEGORY_WORDS["birds"], "coins": CATEGORY_WORDS["coins"], "space": CATEGORY_WORDS["space"]}
    long = lambda cat, rng: describe(cat, rng) + " " + " ".join(rng.choice(words[cat]) for _ in range(120))  # noqa: E731
    add_descriptions(db, {i: c for i, c in cats.items() if i % 2}, text=long)
    add_descriptions(db, {i: c for i, c in cats.items() if not i % 2})
    lines = []
    s = pipeline.cluster_images(db, on="descriptions", labels=["terms"], duplicates=False, layout=False,
                                on_status=lines.append)  # default: the database model's text tower
    assert s.details["text_model"]["kind"] == "clip" and s.details["text_model"]["max_tokens"] == 77
    assert s.details["embedded_now"] == {"descriptions": 18, "truncated": 9}
    assert any("9 of 18 descriptions were longer than 77 tokens and were truncated" in line for line in lines)


def test_an_image_run_is_labelled_from_its_descriptions(described):
    path, cats = described
    db = connect(path)
    s = pipeline.cluster_images(db, labels=["terms"], duplicates=False, layout=False)
    assert s.source == "images" and s.left_out == 0
    got = clusters_of(db, "default")
    labels = ImageCollection(db).labels(c for c, _, _ in got)
    origins = Counter(ls[0]["detail"]["from"].split(" (")[0] for ls in labels.values())
    assert origins["descriptions"] >= 0.8 * len(labels)  # the 5 undescribed images fall back to file names
    said = set(DESCRIPTION_WORDS)
    from_descriptions = [ls[0]["label"].split(", ") for ls in labels.values() if ls[0]["detail"]["from"] == "descriptions"]
    assert [t for t in from_descriptions if not set(t) <= said] == []  # words the descriptions use, not file names
    assert named_share(db, "default", cats)[0] >= 0.8


def test_a_pruned_image_takes_its_description_vector_with_it(tiny_clip, tux_dir, tmp_path):
    folder = tmp_path / "imgs" / "birds"
    folder.mkdir(parents=True)
    for f in sorted((tux_dir / "birds").iterdir())[:6]:
        shutil.copy(f, folder / f.name)
    path = str(tmp_path / "p.db")
    pipeline.load(path, [str(folder.parent)], tiny_clip)
    db = connect(path)
    add_descriptions(db, {iid: "birds" for (iid,) in db.execute("SELECT id FROM images")})
    s = pipeline.cluster_images(db, on="descriptions", min_size=2, labels=[], duplicates=False, layout=False)
    table = f"description_vectors_{s.details['text_model']['id']}"
    assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 6
    db.close()
    sorted(folder.iterdir())[0].unlink()
    assert pipeline.load(path, [str(folder.parent)], tiny_clip, prune=True).pruned == 1
    db = connect(path)
    assert db.execute("SELECT count(*) FROM descriptions").fetchone()[0] == 5  # the trigger took it
    s = pipeline.cluster_images(db, on="descriptions", min_size=2, labels=[], duplicates=False, layout=False)
    assert s.images == 5 and s.details["embedded_now"]["descriptions"] == 0
    assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 5
