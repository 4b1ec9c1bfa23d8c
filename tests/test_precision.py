"""`load --precision`: the variant files of a model (models/variants.py), recorded per
database, with real onnxruntime sessions on the stand-in and an int8 variant made here."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from datasette_imageclust.cli import cli
from datasette_imageclust.models import find_model
from datasette_imageclust.models import variants
from datasette_imageclust.models.variants import auto_precision, cpu_flags
from datasette_imageclust.store import connection
from datasette_imageclust.store.collection import ImageCollection
from tinyvit import quantize, vit_shaped


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def variant_model(tmp_path_factory, stand_in_model) -> Path:
    """The stand-in with an int8 variant beside it (no fp16), as a Hub export ships one."""
    d = tmp_path_factory.mktemp("variants")
    for name in ("vision_model.onnx", "preprocessor_config.json"):
        shutil.copy(Path(stand_in_model) / name, d / name)
    quantize(d / "vision_model.onnx", d / "vision_model_quantized.onnx")
    return d


@pytest.fixture(scope="module")
def stamps(tmp_path_factory, tux_dir) -> Path:
    d = tmp_path_factory.mktemp("stamps")
    for p in sorted(tux_dir.rglob("*.jpg"))[::30]:  # a dozen, across the categories
        shutil.copy(p, d / p.name)
    return d


def vectors(db: Path) -> tuple[str, np.ndarray]:
    """(the recorded precision of the database's model, its vectors in sha256 order)."""
    conn = connection.connect(db, readonly=True)
    try:
        c = ImageCollection(conn)
        ids, vecs = c.vectors()
        sha = dict(conn.execute("SELECT id, sha256 FROM images").fetchall())
        order = np.argsort([sha[int(i)] for i in ids])
        return c.model()["precision"], vecs[order]
    finally:
        conn.close()


def test_int8_is_recorded_and_close_to_fp32(tmp_path, variant_model, stamps):
    assert run("load", tmp_path / "a.db", stamps, "--model", variant_model).exit_code == 0
    r = run("load", tmp_path / "b.db", stamps, "--model", variant_model, "--precision", "int8")
    assert r.exit_code == 0, r.stderr
    p32, v32 = vectors(tmp_path / "a.db")
    p8, v8 = vectors(tmp_path / "b.db")
    assert (p32, p8) == ("fp32", "int8")
    cosine = np.sum(v32 * v8, axis=1)
    # bench/precision.py measured a mean of 0.83 over the 353 stamps (int8 convolutions
    # of EfficientNet lose more than a transformer's matmuls); distinct, yet clearly close.
    assert 0.7 <= cosine.mean() < 0.999


def test_another_precision_is_another_model(tmp_path, variant_model, stamps):
    db = tmp_path / "x.db"
    assert run("load", db, stamps, "--model", variant_model).exit_code == 0
    r = run("load", db, stamps, "--model", variant_model, "--precision", "int8")
    assert r.exit_code == 1
    assert "made by model" in r.stderr and "(fp32," in r.stderr and "(int8," in r.stderr
    assert "--reembed" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("load", db, stamps, "--model", variant_model, "--precision", "int8", "--reembed")
    assert r.exit_code == 0, r.stderr
    assert vectors(db)[0] == "int8"
    # The same variant again is the same model: nothing to redo.
    assert run("load", db, stamps, "--model", variant_model, "--precision", "int8").exit_code == 0


def test_missing_variant_is_a_one_line_error(tmp_path, variant_model, stamps):
    r = run("load", tmp_path / "x.db", stamps, "--model", variant_model, "--precision", "fp16")
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "no fp16 variant" in r.stderr and "vision_model_fp16.onnx" in r.stderr
    assert "vision_model.onnx, vision_model_quantized.onnx" in r.stderr  # what it has
    assert not (tmp_path / "x.db").exists()


def test_auto_rule():
    # Where int8 was measured faster: only with VNNI, only when the model ships int8.
    assert auto_precision({"avx2", "avx512f"}, {"fp32", "int8"}, int8_faster=True) == "fp32"
    assert auto_precision({"avx2", "avx512_vnni"}, {"fp32", "int8"}, int8_faster=True) == "int8"
    assert auto_precision({"avx2", "avx_vnni"}, {"fp32", "fp16", "int8"}, int8_faster=True) == "int8"
    assert auto_precision({"avx_vnni"}, {"fp32", "fp16"}, int8_faster=True) == "fp32"  # never fp16
    # Where it was measured slower (this machine, bench/precision.py): fp32 even with VNNI.
    assert auto_precision({"avx2", "avx512_vnni"}, {"fp32", "int8"}, int8_faster=False) == "fp32"
    assert auto_precision({"avx512_vnni"}, {"fp32", "int8"}) == \
        ("int8" if variants.INT8_MEASURED_FASTER_WITH_VNNI else "fp32")
    # A database's variant comes first, whatever the CPU prefers, where the model ships it.
    assert auto_precision({"avx2"}, {"fp32", "int8"}, int8_faster=True, keep="int8") == "int8"
    assert auto_precision({"avx512_vnni"}, {"fp32", "int8"}, int8_faster=True, keep="fp32") == "fp32"
    assert auto_precision({"avx512_vnni"}, {"fp32", "fp16"}, int8_faster=True, keep="fp16") == "fp16"
    assert auto_precision({"avx2"}, {"fp32"}, int8_faster=True, keep="int8") == "fp32"  # not shipped


def test_auto_resolves_to_a_recorded_variant(variant_model):
    # The stand-in is convolutional: its int8 file runs ConvInteger, measured slower (x0.24),
    # so auto is fp32 even where the CPU has VNNI and int8 helps a transformer.
    assert variants.int8_is_slow(variant_model / "vision_model_quantized.onnx")
    files = find_model(str(variant_model), precision="auto")
    assert files.precision == "fp32" and files.vision.name == "vision_model.onnx"


def test_auto_takes_int8_for_a_matmul_model_on_a_vnni_cpu(tmp_path, tiny_clip):
    """A model whose int8 file does its work in MatMulInteger (a transformer's case, measured
    x1.49 with VNNI): auto loads it wherever the CPU has VNNI. Shaped like CLIP's ViT export,
    its int8 file has one ConvInteger (the patch embedding), which must not make it "slow"."""
    d = tmp_path / "clip"
    shutil.copytree(tiny_clip, d)
    vit_shaped(d / "onnx" / "vision_model.onnx")
    quantize(d / "onnx" / "vision_model.onnx", d / "onnx" / "vision_model_quantized.onnx")
    data = (d / "onnx" / "vision_model_quantized.onnx").read_bytes()
    assert data.count(b"ConvInteger") == 1 and data.count(b"MatMulInteger") == 4
    assert not variants.int8_is_slow(d / "onnx" / "vision_model_quantized.onnx")
    files = find_model(str(d), precision="auto")
    vnni = any(f in cpu_flags() for f in variants.VNNI_FLAGS)
    assert files.precision == ("int8" if vnni else "fp32")
    assert files.vision.name == ("vision_model_quantized.onnx" if vnni else "vision_model.onnx")


def test_auto_keeps_the_variant_the_database_holds(tmp_path, variant_model, stamps):
    """On a database of int8 vectors auto stays int8, though alone it takes fp32 for this
    convolutional model (a database made on a VNNI machine, grown on another): two variants'
    vectors do not mix. With --reembed, auto decides afresh."""
    first = tmp_path / "first"
    first.mkdir()
    for f in sorted(stamps.iterdir())[:4]:
        shutil.copy(f, first / f.name)
    db = tmp_path / "x.db"
    assert run("load", db, first, "--model", variant_model, "--precision", "int8").exit_code == 0
    assert find_model(str(variant_model), precision="auto").precision == "fp32"  # alone
    r = run("load", db, stamps, "--model", variant_model, "--precision", "auto")
    assert r.exit_code == 0, r.stderr
    assert f"loading model {variant_model} (int8, chosen by --precision auto)" in r.stderr  # says what it took
    precision, v = vectors(db)
    assert precision == "int8" and len(v) == len(list(stamps.iterdir()))
    r = run("load", db, stamps, "--model", variant_model, "--precision", "auto", "--reembed")
    assert r.exit_code == 0, r.stderr
    assert "(fp32, chosen by --precision auto)" in r.stderr
    assert vectors(db)[0] == "fp32"
