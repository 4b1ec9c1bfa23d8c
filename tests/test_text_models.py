"""Text models for descriptions: a CLIP text tower and a sentence-embedding encoder
(the Hugging Face ONNX layout, mean pooling), told apart by ``find_text_model``."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasette_imageclust.models import (ModelError, SentenceEmbedder, TextEmbedder, find_text_model,
                                         text_model)
from fakehub import FakeHub
from tinysentence import make_tiny_sentence

HUB_ID = "Xenova/paraphrase-multilingual-MiniLM-L12-v2"


def test_find_text_model_tells_the_kinds_apart(tiny_clip, tiny_sentence, stand_in_model, tmp_path):
    clip = find_text_model(tiny_clip)
    assert (clip.kind, clip.max_tokens, clip.model.name) == ("clip", 77, "text_model.onnx")
    sent = find_text_model(tiny_sentence)
    assert (sent.kind, sent.max_tokens, sent.model.name) == ("sentence", 128, "model.onnx")
    assert isinstance(text_model(clip), TextEmbedder) and isinstance(text_model(sent), SentenceEmbedder)
    with pytest.raises(ModelError, match="no text model: expected a CLIP text tower"):
        find_text_model(stand_in_model)  # an image model without a text tower
    with pytest.raises(ModelError, match="does not exist"):
        find_text_model(str(tmp_path / "nowhere"))


def test_max_tokens_from_the_model_files(tmp_path):
    d = make_tiny_sentence(tmp_path / "m")
    (d / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 1e30}))  # "no limit" in HF files
    assert find_text_model(str(d)).max_tokens == 512  # then config.json's positions
    (d / "config.json").write_text(json.dumps({"model_type": "xlm-roberta", "max_position_embeddings": 514}))
    assert find_text_model(str(d)).max_tokens == 512  # RoBERTa numbers positions from 2
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    assert find_text_model(str(d)).max_tokens == 128  # what sentence-transformers itself uses


def test_sentence_vectors_are_mean_pooled_over_the_mask(tiny_sentence):
    emb = text_model(find_text_model(tiny_sentence))
    texts = ["a red bird", "a small white flower in a garden with green leaves and a blue sky", "coins"]
    together = emb.embed(texts)
    alone = np.stack([emb.embed([t])[0] for t in texts])  # no padding at all
    assert together.shape == (3, 128) and np.allclose(np.linalg.norm(together, axis=1), 1, atol=1e-5)
    assert np.allclose(together, alone, atol=1e-5)  # the padded positions do not count
    # The mean of the token states, by hand, from the model's own output:
    import onnxruntime as ort

    from datasette_imageclust.models.tokens import Tokens

    b = Tokens(Path(tiny_sentence) / "tokenizer.json", 128).batch(["a red bird"])
    states = ort.InferenceSession(str(Path(tiny_sentence) / "onnx/model.onnx")).run(
        None, {"input_ids": b.ids, "attention_mask": b.mask, "token_type_ids": np.zeros_like(b.ids)})[0]
    mean = states[0].mean(0)
    assert np.allclose(together[0], mean / np.linalg.norm(mean), atol=1e-5)
    # Bag of words: a shared word brings texts closer than no shared word.
    a, b2, c = emb.embed(["red bird feathers", "bird feathers wings", "metal coin money"])
    assert a @ b2 > a @ c + 0.2


@pytest.mark.parametrize("kind", ["clip", "sentence"])
def test_long_texts_are_truncated_and_counted(kind, tiny_clip, tiny_sentence, tmp_path):
    path = tiny_clip if kind == "clip" else str(make_tiny_sentence(tmp_path / "short", max_tokens=16))
    emb = text_model(find_text_model(path))
    limit = emb.max_tokens
    long = " ".join(["bird"] * (limit + 20))
    b = emb.tokens.batch([long, "a bird"])
    assert b.ids.shape[1] == limit and b.truncated == 1
    end = b.ids[0, limit - 1]  # the end token survives the cut (CLIP pools there)
    assert end == emb.tokens.tokenizer.token_to_id("<|endoftext|>" if kind == "clip" else "[SEP]")
    vecs, truncated = emb.embed_counting([long, "a bird", long + " bird", "bird " * 3], batch_size=2)
    assert truncated == 2 and vecs.shape[0] == 4
    assert np.allclose(vecs[0], vecs[2], atol=1e-5)  # what lies past the limit is not seen


def test_sentence_model_from_the_hub_once_then_cached(tmp_path, tiny_sentence):
    """The cached download code, for a sentence model: its files fetched once from a local
    Hub stand-in; a second process finds them with the Hub gone."""
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    code = ("from datasette_imageclust.models import find_text_model, text_model; "
            f"f = find_text_model({HUB_ID!r}); e = text_model(f); "
            "print(f.kind, f.max_tokens, e.embed(['a bird']).shape[1])")
    with FakeHub(HUB_ID, Path(tiny_sentence)) as hub:
        r = subprocess.run([sys.executable, "-c", code], env=dict(env, HF_ENDPOINT=hub.url),
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["sentence", "128", "128"]
        got = [p for m, p in hub.requests if m == "GET"]
        assert any(p.endswith("onnx/model.onnx") for p in got) and any(p.endswith("tokenizer.json") for p in got)
    r = subprocess.run([sys.executable, "-c", code], env=dict(env, HF_HUB_OFFLINE="1"), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["sentence", "128", "128"]


def test_uncached_hub_text_model_offline_says_what_to_do(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    code = f"from datasette_imageclust.models import find_text_model; find_text_model({HUB_ID!r})"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "--text-model DIR" in r.stderr and "onnx/model.onnx" in r.stderr


def test_a_clip_directory_copy_is_clip(tiny_clip, tmp_path):
    # Both files present (some exports ship model.onnx too): the CLIP text tower wins.
    d = Path(shutil.copytree(tiny_clip, tmp_path / "both"))
    shutil.copy(d / "onnx" / "text_model.onnx", d / "onnx" / "model.onnx")
    assert find_text_model(str(d)).kind == "clip"
