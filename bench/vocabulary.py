"""How long `cluster --labels clip` takes the first time for a model: embedding the shipped
zero-shot vocabulary with the model's text tower (then cached in the database).

    python bench/vocabulary.py --model /tmp/randclip      # ViT-B/32-shaped random CLIP
    python bench/vocabulary.py --model DIR [--terms 200]  # a quick check on the first terms

/tmp/randclip is `python ../shared/tools/make_random_clip.py /tmp/randclip`: the real
architecture and cost, random weights. Prints the number of terms and the wall time of
labels.vocabulary_vectors into a fresh database, and the time of a second call (cached).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datasette_imageclust.store import connection  # noqa: E402
from datasette_imageclust.analysis import labels  # noqa: E402
from datasette_imageclust.models import TextEmbedder, file_sha256, find_model  # noqa: E402
from datasette_imageclust.store.schema import migrate, now  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model directory with a text tower")
    ap.add_argument("--terms", type=int, help="only the first N terms (default: all)")
    a = ap.parse_args()
    files = find_model(a.model, text=True)
    if files.text is None or files.tokenizer is None:
        raise SystemExit(f"{a.model} has no text tower (onnx/text_model.onnx + tokenizer.json)")
    terms = labels.vocabulary()[:a.terms] if a.terms else labels.vocabulary()
    with tempfile.TemporaryDirectory() as tmp:
        db = connection.connect(os.path.join(tmp, "v.db"))
        migrate(db, "core")
        dims = TextEmbedder(files).embed(["x"]).shape[1]  # (untimed: the check vocabulary_vectors makes)
        model = {"name": os.path.abspath(a.model), "sha256": file_sha256(files.vision), "dimensions": dims,
                 "created": now()}
        t = time.perf_counter()
        v = labels.vocabulary_vectors(db, model, terms)
        first = time.perf_counter() - t
        t = time.perf_counter()
        labels.vocabulary_vectors(db, model, terms)
        cached = time.perf_counter() - t
        connection.close(db)
    print(json.dumps({"model": a.model, "terms": len(terms), "vocabulary_size": len(labels.vocabulary()),
                      "dimensions": int(v.shape[1]), "cpus": os.cpu_count(),
                      "embed_seconds": round(first, 2), "cached_seconds": round(cached, 3)}, indent=2))


if __name__ == "__main__":
    main()
