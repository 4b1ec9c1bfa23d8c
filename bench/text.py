"""What the text features cost: embedding descriptions, tagging images, clustering on tags.

    python bench/text.py embed --clip /tmp/randclip [--n 10000]   # descriptions/s, both kinds of text model
    python bench/text.py tag --clip /tmp/randclip [--sizes 10000,100000]   # `imageclust tag`: time, peak RSS
    python bench/text.py tagclusters [--sizes 10000,100000]      # `cluster --on tags`: tag vectors + Ward

/tmp/randclip is `python ../shared/tools/make_random_clip.py /tmp/randclip` (ViT-B/32 at
full cost, random weights). The sentence model is written here: a BERT encoder of
paraphrase-multilingual-MiniLM-L12-v2's shape (12 layers, width 384, 12 heads, FFN 1536,
128 tokens; random weights, the CLIP BPE tokenizer, a 49,408-token table instead of
250,002: a table lookup costs the same whatever its length), so the figures are its cost,
never its quality. Descriptions are synthetic, ~90 words each (the length of the paper's
prompt's answers). `tag` and `tagclusters` write a synthetic database per size (512-d
vectors; for `tag` with the vocabulary's text vectors cached, as after a first run; for
`tagclusters` 10 tags per image from 3,100), then time the step in a fresh subprocess and
report that process's peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from datasette_imageclust import pipeline  # noqa: E402
from datasette_imageclust.store import connection  # noqa: E402
from datasette_imageclust.store.schema import migrate, now  # noqa: E402

CLIP_TOKENIZER = ROOT.parent / "shared" / "models" / "clip-tokenizer" / "tokenizer.json"
WORDS = ("the image shows a group of people standing in front of a large building with banners and signs "
         "protest climate change street city crowd police smoke fire forest polar bear ice ocean flood map "
         "earth chart graph text headline politician speech microphone podium solar panels wind turbines "
         "factory chimney car traffic children school strike placard slogan red green blue background "
         "foreground daylight evening photograph illustration cartoon meme screenshot tweet logo").split()


# --- a MiniLM-L12-shaped encoder ------------------------------------------------------------

def make_encoder(out: Path, layers: int = 12, hidden: int = 384, heads: int = 12, ffn: int = 1536,
                 vocab: int = 49408, positions: int = 512, seed: int = 0) -> Path:
    """A BERT encoder (HF ONNX layout: onnx/model.onnx -> last_hidden_state) with random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def w(name: str, *shape: int, scale: float = 0.02) -> str:
        inits.append(numpy_helper.from_array((scale * rng.standard_normal(shape)).astype(np.float32), name))
        return name

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [name], **attrs))
        return name

    def layernorm(x: str, name: str) -> str:
        return node("LayerNormalization", [x, const(name + ".g", np.ones(hidden, np.float32)),
                                           const(name + ".b", np.zeros(hidden, np.float32))], name, axis=-1)

    d = hidden // heads
    seq = node("Gather", [node("Shape", ["input_ids"], "shape"), const("one", np.int64(1))], "seq", axis=0)
    pos = node("Range", [const("zero", np.int64(0)), seq, const("step", np.int64(1))], "pos")
    e = node("Add", [node("Gather", [w("word", vocab, hidden), "input_ids"], "we"),
                     node("Gather", [w("type", 2, hidden), "token_type_ids"], "te")], "e1")
    h = layernorm(node("Add", [e, node("Gather", [w("position", positions, hidden), pos], "pe")], "e2"), "ln0")
    m = node("Cast", ["attention_mask"], "mf", to=TensorProto.FLOAT)
    bias = node("Unsqueeze", [node("Mul", [node("Sub", [const("fone", np.float32(1)), m], "inv"),
                                           const("neg", np.float32(-10000))], "bias0"),
                              const("axes12", np.array([1, 2], np.int64))], "bias")
    split = const("split", np.array([0, 0, heads, d], np.int64))
    merge = const("merge", np.array([0, 0, hidden], np.int64))
    scale = const("scale", np.float32(1 / np.sqrt(d)))
    for i in range(layers):
        p = f"l{i}."

        def dense(x: str, n_in: int, n_out: int, name: str) -> str:
            return node("Add", [node("MatMul", [x, w(p + name + ".w", n_in, n_out)], p + name + ".mm"),
                                w(p + name + ".b", n_out)], p + name)

        def heads_of(x: str, name: str, perm: list[int]) -> str:
            return node("Transpose", [node("Reshape", [x, split], p + name + ".r")], p + name + ".t", perm=perm)

        q = heads_of(dense(h, hidden, hidden, "q"), "q", [0, 2, 1, 3])
        k = heads_of(dense(h, hidden, hidden, "k"), "k", [0, 2, 3, 1])
        v = heads_of(dense(h, hidden, hidden, "v"), "v", [0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k], p + "qk"), scale], p + "qks"), bias], p + "s")
        ctx = node("MatMul", [node("Softmax", [scores], p + "a", axis=-1), v], p + "ctx")
        ctx = node("Reshape", [node("Transpose", [ctx], p + "ctx.t", perm=[0, 2, 1, 3]), merge], p + "ctx.r")
        h = layernorm(node("Add", [h, dense(ctx, hidden, hidden, "o")], p + "res1"), p + "ln1")
        up = dense(h, hidden, ffn, "up")
        gelu = node("Mul", [node("Mul", [up, const(p + "half", np.float32(0.5))], p + "hx"),
                            node("Add", [node("Erf", [node("Div", [up, const(p + "sq2", np.float32(np.sqrt(2)))],
                                                            p + "xs")], p + "erf"),
                                         const(p + "fone", np.float32(1))], p + "erf1")], p + "gelu")
        h = layernorm(node("Add", [h, dense(gelu, ffn, hidden, "down")], p + "res2"), p + "ln2")
    nodes.append(helper.make_node("Identity", [h], ["last_hidden_state"]))
    ints = TensorProto.INT64
    graph = helper.make_graph(
        nodes, "encoder", [helper.make_tensor_value_info(n, ints, ["batch", "sequence"])
                           for n in ("input_ids", "attention_mask", "token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])], inits)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(out / "onnx" / "model.onnx"))
    (out / "tokenizer.json").write_bytes(CLIP_TOKENIZER.read_bytes())
    (out / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 128}))
    (out / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": hidden,
                                                 "num_hidden_layers": layers, "random_weights": True}))
    return out


# --- embed ----------------------------------------------------------------------------------

def descriptions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(70, 110))) + "." for _ in range(n)]


def embed(n: int, clip: str | None) -> None:
    from datasette_imageclust.analysis.textvectors import embed_descriptions
    from datasette_imageclust.models import find_text_model, text_model

    texts = descriptions(n)
    with tempfile.TemporaryDirectory() as tmp:
        models = {"sentence (MiniLM-L12 shape)": str(make_encoder(Path(tmp) / "minilm"))}
        if clip:
            models["CLIP ViT-B/32 text tower"] = clip
        for label, path in models.items():
            db = connection.connect(os.path.join(tmp, f"{len(label)}.db"))
            migrate(db, "core")
            migrate(db, "text")
            with db.conn:
                db.execute("INSERT INTO prompts (id, sha256, text, created) VALUES (1, 'p', 'p', ?)", [now()])
                db.conn.executemany("INSERT INTO images (id, sha256, bytes, created) VALUES (?, ?, 1, ?)",
                                    [(i + 1, f"s{i}", now()) for i in range(n)])
                db.conn.executemany(
                    "INSERT INTO descriptions (id, image_id, model, api, prompt_id, text, input, created) "
                    "VALUES (?, ?, 'vlm', 'ollama', 1, ?, 'thumbnail', ?)",
                    [(i + 1, i + 1, t, now()) for i, t in enumerate(texts)])
            files = find_text_model(path)
            t0 = time.perf_counter()
            text_model(files).embed(texts[:8])  # start-up alone (session, first batch), for scale
            startup = time.perf_counter() - t0
            rows = [{"description_id": i + 1, "text": t} for i, t in enumerate(texts)]
            t0 = time.perf_counter()
            s = embed_descriptions(db, files, rows)  # loads the model itself: start-up included
            secs = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = embed_descriptions(db, files, rows)
            connection.close(db)
            print(json.dumps({"model": label, "descriptions": n, "seconds": round(secs, 1), "startup_seconds": round(startup, 2),
                              "per_second": round(n / secs, 1), "truncated": s.truncated, "max_tokens": s.max_tokens,
                              "second_run_seconds": round(time.perf_counter() - t0, 2),
                              "second_run_embedded": again.embedded, "cpus": os.cpu_count()}), flush=True)


# --- tag, tagclusters (one size per child process) ------------------------------------------

def _synthetic_db(path: str, n: int, dims: int, model_dir: str | None) -> None:
    from synthdb import make_db

    from datasette_imageclust.models import file_sha256, find_model

    make_db(path, n, clusters=max(2, n // 50), dims=dims, thumb_px=16, distinct_thumbs=40, with_run=False)
    if model_dir:  # the vectors "come from" this model, whose text tower embeds the vocabulary
        db = connection.connect(path)
        with db.conn:
            db.execute("UPDATE models SET name = ?, sha256 = ?", [os.path.abspath(model_dir),
                                                                   file_sha256(find_model(model_dir).vision)])
        connection.close(db)


def child(what: str, n: int, clip: str | None, path: str) -> None:
    """One step in this process: "prepare" writes the database (and, for tag, caches the
    vocabulary's text vectors, as any second run finds them), the others time the step."""
    from datasette_imageclust.analysis import labels
    from datasette_imageclust.store.collection import ImageCollection

    out: dict = {"n": n}
    if what.startswith("prepare"):
        _synthetic_db(path, n, 512, clip if what == "prepare-tag" else None)
        db = connection.connect(path)
        if what == "prepare-tag":
            labels.vocabulary_vectors(db, ImageCollection(db).model(), labels.vocabulary())
        else:
            _random_tags(db, n)
        connection.close(db)
        return
    db = connection.connect(path)
    t0 = time.perf_counter()
    if what == "tag":
        s = pipeline.tag(db, top=10)
        out.update(seconds=round(time.perf_counter() - t0, 2), tags=s.tags)
    else:
        s = pipeline.cluster_images(db, on="tags", labels=["tags"], duplicates=False, layout=False)
        out.update(seconds=round(time.perf_counter() - t0, 2), clusters=s.clusters,
                   tag_vectors=s.details["tag_vectors"])
    connection.close(db)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out))


def _random_tags(db, n: int, vocabulary: int = 3100, per_image: int = 10) -> None:
    """10 tags per image from 3,100 (as `imageclust tag` gives), Zipf-like, themed per group."""
    migrate(db, "text")
    rng = np.random.default_rng(0)
    themes = rng.integers(0, vocabulary, (max(2, n // 50), 30))
    rows = []
    for iid in range(1, n + 1):
        theme = themes[iid % len(themes)]
        picks = set(rng.choice(theme, 6).tolist()) | set(rng.zipf(1.3, per_image).clip(1, vocabulary) - 1)
        rows += [(iid, "clip", f"t{t}", None, r + 1, now()) for r, t in enumerate(sorted(picks)[:per_image])]
    with db.conn:
        db.conn.executemany("INSERT INTO image_tags (image_id, source, tag, score, rank, created) "
                            "VALUES (?, ?, ?, ?, ?, ?)", rows)


def sizes_in_children(what: str, sizes: list[int], clip: str | None) -> None:
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "t.db")
            for step in ("prepare-" + what, what):
                r = subprocess.run([sys.executable, __file__, "child", step, str(n), clip or "", path],
                                   capture_output=True, text=True)
                if r.returncode:
                    print(r.stderr[-2000:])
                    break
            else:
                print(r.stdout.strip().splitlines()[-1], flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        return child(sys.argv[2], int(sys.argv[3]), sys.argv[4] or None, sys.argv[5])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["embed", "tag", "tagclusters"])
    ap.add_argument("--clip", help="a CLIP model directory with a text tower (e.g. /tmp/randclip)")
    ap.add_argument("--n", type=int, default=10000, help="embed: descriptions")
    ap.add_argument("--sizes", default="10000,100000", help="tag, tagclusters: images")
    a = ap.parse_args()
    if a.what == "embed":
        embed(a.n, a.clip)
    else:
        if a.what == "tag" and not a.clip:
            raise SystemExit("tag needs --clip DIR (a CLIP model with a text tower)")
        sizes_in_children(a.what, [int(s) for s in a.sizes.split(",")], a.clip)


if __name__ == "__main__":
    main()
