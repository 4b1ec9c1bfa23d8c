"""Where onnxruntime runs a model: ``--device`` -> execution providers, and the one way a
session is created with them (falling back to the CPU when an accelerator fails to start).

The choice is made once per process (:func:`choose`, from the command line) because every
model a command opens (vision tower, text tower, sentence encoder) should run on the same
hardware; without a choice, sessions run on the CPU, as they always have (the web server).
"""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from .hub import ModelError

CPU = "CPUExecutionProvider"
# Each device's provider; the order is what ``auto`` prefers (dedicated GPUs first).
PROVIDERS: dict[str, str] = {
    "cuda": "CUDAExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": CPU,
}
DEVICES = ("auto", *PROVIDERS)
# What to install for a device the installed onnxruntime build does not offer.
INSTALL: dict[str, str] = {
    "cuda": "pip install 'datasette-imageclust[gpu]' (onnxruntime-gpu, with CUDA and cuDNN)",
    "rocm": "onnxruntime-rocm (AMD's build for ROCm) in place of onnxruntime",
    "directml": "pip install 'datasette-imageclust[directml]' (onnxruntime-directml, Windows)",
    "coreml": "the macOS onnxruntime wheel (pip install onnxruntime on a Mac)",
    "openvino": "pip install 'datasette-imageclust[openvino]' (onnxruntime-openvino)",
}


class DeviceError(ModelError):
    """A device the installed onnxruntime cannot use."""


def available() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def providers_for(device: str, offered: list[str] | None = None) -> list[str]:
    """The providers to ask a session for, best first, always ending with the CPU."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return [CPU]
    offered = available() if offered is None else offered
    if device == "auto":
        best = next((p for p in PROVIDERS.values() if p in offered), CPU)
        return [best] if best == CPU else [best, CPU]
    p = PROVIDERS[device]
    if p not in offered:
        raise DeviceError(f"device {device} needs {p}, which this onnxruntime does not offer "
                          f"(it offers {', '.join(offered)}): install {INSTALL[device]}")
    return [p, CPU]


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


class _Choice:
    device = "cpu"  # a library caller's default: what sessions always used
    providers: list[str] | None = None  # resolved from ``device`` when first needed
    report: Callable[[str], None] = staticmethod(to_stderr)


def choose(device: str, report: Callable[[str], None] | None = None) -> None:
    """Make ``device`` the one every later session of this process uses. A named device
    this onnxruntime cannot use raises :class:`DeviceError` at once; ``auto`` is resolved
    (and announced through ``report``) when the first session is made, so commands that
    run no model do not pay for importing onnxruntime."""
    providers = None if device == "auto" else providers_for(device)
    _Choice.device, _Choice.providers = device, providers
    if report is not None:
        _Choice.report = staticmethod(report)


def device() -> str:
    """The chosen device's name as given (``auto`` stays ``auto``: a cluster's workers resolve it)."""
    return _Choice.device


def chosen() -> list[str]:
    """The providers of the chosen device (resolving ``auto`` and saying what it chose)."""
    if _Choice.providers is None:
        _Choice.providers = providers_for(_Choice.device)
        if _Choice.device == "auto":
            name = next(d for d, p in PROVIDERS.items() if p == _Choice.providers[0])
            _Choice.report(f"device: {name} ({_Choice.providers[0]}; auto, of {', '.join(available())})")
    return list(_Choice.providers)


def session(path: Path, options: Any, providers: list[str] | None = None) -> Any:
    """An ``InferenceSession`` on ``providers`` (default: the chosen device). An accelerator
    that fails to start (no driver, no memory, a missing library) costs one warning line
    and the session runs on the CPU instead."""
    import onnxruntime as ort

    providers = chosen() if providers is None else providers
    if providers[0] == CPU:
        try:
            return ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as e:
            raise ModelError(f"cannot load {path} with onnxruntime: {e}") from e
    # onnxruntime retries a provider that fails on the CPU by itself, printing a block of
    # lines to stdout (where --json goes) and a warning: keep them, say one line instead.
    said = io.StringIO()
    options.log_severity_level = 3
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(said):
            warnings.simplefilter("ignore", UserWarning)
            sess = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # no retry (onnxruntime's fallback disabled or failing too)
        _Choice.report(f"warning: {providers[0]} failed to start ({_first_line(str(e))}); running on the CPU")
        return session(path, options, [CPU])
    if providers[0] not in sess.get_providers():
        error = next((line for line in said.getvalue().splitlines() if line.startswith("EP Error ")), "")
        reason = _first_line(error.removeprefix("EP Error ")) if error else "not available to this onnxruntime"
        _Choice.report(f"warning: {providers[0]} failed to start ({reason}); running on the CPU")
    return sess


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return (lines[0] if lines else "no reason given")[:200]
