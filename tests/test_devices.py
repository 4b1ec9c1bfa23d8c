"""--device: which onnxruntime execution provider runs the models (real sessions, CPU here)."""
from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest
from click.testing import CliRunner

from datasette_imageclust.cli import cli
from datasette_imageclust.models import ImageEmbedder, devices, find_model
from imagefactory import photo_folder

ACCELERATORS = [p for d, p in devices.PROVIDERS.items() if d != "cpu"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(autouse=True)
def _reset_device():
    yield
    devices.choose("cpu", report=devices.to_stderr)  # the library default, for the tests after these


def test_providers_follow_the_device_and_auto_prefers_accelerators():
    offered = ["CUDAExecutionProvider", "OpenVINOExecutionProvider", "CPUExecutionProvider"]
    assert devices.providers_for("auto", offered) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert devices.providers_for("auto", offered[1:]) == ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    assert devices.providers_for("auto", ["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert devices.providers_for("openvino", offered) == ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    assert devices.providers_for("cpu", offered) == ["CPUExecutionProvider"]
    with pytest.raises(devices.DeviceError, match="onnxruntime-gpu"):
        devices.providers_for("cuda", ["CPUExecutionProvider"])
    with pytest.raises(devices.DeviceError, match="unknown device 'tpu'"):
        devices.providers_for("tpu", offered)


def test_auto_picks_the_cpu_on_this_machine_and_says_so(tmp_path, stand_in_model):
    here = [p for p in ACCELERATORS if p in ort.get_available_providers()]
    if here:
        pytest.skip(f"this machine's onnxruntime offers {here}: auto would not pick the CPU")
    photo_folder(tmp_path / "p", 2)
    r = run("load", tmp_path / "x.db", tmp_path / "p", "--model", stand_in_model, "--json")
    assert r.exit_code == 0, r.stderr
    assert "device: cpu (CPUExecutionProvider; auto" in r.stderr
    assert json.loads(r.stdout)["new"] == 2


def test_a_cpu_session_is_a_real_cpu_session(stand_in_model):
    devices.choose("cpu")
    emb = ImageEmbedder(find_model(stand_in_model))
    assert emb.session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize("device, package", [("cuda", "onnxruntime-gpu"), ("openvino", "onnxruntime-openvino"),
                                             ("directml", "onnxruntime-directml")])
def test_a_device_the_build_lacks_is_one_line_and_writes_nothing(tmp_path, stand_in_model, device, package):
    if devices.PROVIDERS[device] in ort.get_available_providers():
        pytest.skip(f"this onnxruntime offers {devices.PROVIDERS[device]}")
    photo_folder(tmp_path / "p", 1)
    db = tmp_path / "x.db"
    r = run("load", db, tmp_path / "p", "--model", stand_in_model, "--device", device)
    assert r.exit_code == 1
    assert package in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not db.exists()


def test_every_model_command_takes_device(tmp_path, tiny_clip_db):
    for args in (["tag", tiny_clip_db], ["similar", tiny_clip_db, "--text", "a cat"],
                 ["cluster", tiny_clip_db, "--on", "descriptions"], ["load", tmp_path / "y.db", tmp_path]):
        r = run(*args, "--device", "cuda")
        assert r.exit_code == 1 and "onnxruntime-gpu" in r.stderr, (args, r.stderr)
        r = run(*args, "--device", "tpu")
        assert r.exit_code == 1 and "unknown device 'tpu'" in r.stderr, (args, r.stderr)
    assert not (tmp_path / "y.db").exists()


def test_similar_runs_its_text_tower_on_the_chosen_device(tiny_clip_db):
    r = run("similar", tiny_clip_db, "--text", "a cat", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)


@pytest.mark.parametrize("provider, reason", [
    # offered by no onnxruntime installed here: onnxruntime itself drops it
    ("CUDAExecutionProvider", "not available to this onnxruntime"),
    # a provider onnxruntime fails to create: it raises inside, retries on the CPU and
    # prints a block to stdout, which the fallback must keep off stdout (--json)
    ("NoSuchExecutionProvider", "Unknown Provider Type"),
])
def test_a_provider_that_fails_falls_back_to_the_cpu_with_one_warning(stand_in_model, capsys, provider, reason):
    said: list[str] = []
    devices.choose("cpu", report=said.append)
    model = Path(find_model(stand_in_model).vision)
    sess = devices.session(model, ort.SessionOptions(), [provider, "CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert len(said) == 1 and said[0].startswith(f"warning: {provider} failed to start") and reason in said[0]
    assert "running on the CPU" in said[0]
    assert capsys.readouterr().out == ""
