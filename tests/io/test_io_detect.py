"""Formats spectracli does not read are named by their magic bytes or layout, with what it reads."""

from __future__ import annotations

import zipfile

import pytest

from spectracli.errors import CheckpointError
from spectracli.io import open_checkpoint


def _tflite(p):
    p.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)


def _h5(p):
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)


def _keras(p):
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")


def _ort(p):
    p.write_bytes(b"\x14\x00\x00\x00ORTM" + b"\x00" * 64)


def _saved_model(d):
    d.mkdir()
    (d / "saved_model.pb").write_bytes(b"\x08\x01\x12\x00")
    (d / "variables").mkdir()


def _mlpackage(d):
    d.mkdir()
    (d / "Manifest.json").write_text("{}")
    (d / "Data" / "com.apple.CoreML").mkdir(parents=True)


@pytest.mark.parametrize(
    "name, make, said",
    [
        ("m.tflite", _tflite, "TensorFlow Lite"),
        ("weights.h5", _h5, "HDF5 file (Keras"),
        ("m.keras", _keras, "Keras .keras archive"),
        ("m.ort", _ort, "ONNX Runtime"),
        ("export", _saved_model, "TensorFlow SavedModel"),
        ("m.mlpackage", _mlpackage, "Core ML package"),
    ],
)
def test_foreign_formats_are_named_with_what_is_supported(tmp_path, name, make, said):
    path = tmp_path / name
    make(path)
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(path)
    message = str(info.value)
    assert said in message and "does not read" in message
    assert "GGUF" in message and "ONNX" in message and "safetensors" in message
    assert "\n" not in message


def test_unknown_binary_names_the_supported_formats(tmp_path):
    path = tmp_path / "blob.weights"
    path.write_bytes(b"\x00\x01\x02" * 50)
    with pytest.raises(CheckpointError, match="not a recognised checkpoint format .*GGUF"):
        open_checkpoint(path)
