"""Shared by the tests: the repository's fixtures (read with a small safetensors reader, so the tests
need numpy and pytest only) and the devices to test on."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

import res2net_wgpu as r2n

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SAMPLES = ROOT / "weights" / "samples"

_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}


def read_safetensors(path):
    """The tensors of a safetensors file as numpy arrays (F32, F16 and I64 only)."""
    raw = Path(path).read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    data = raw[8 + size :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in _DTYPES:
            continue
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def fixture_names():
    return sorted(p.name[: -len(".io.safetensors")] for p in FIXTURES.glob("*.io.safetensors"))


def weights(name):
    return FIXTURES / f"{name}.safetensors"


def golden(name):
    """The fixture's input batch and PyTorch's logits and probabilities."""
    return read_safetensors(FIXTURES / f"{name}.io.safetensors")


def _gpu_usable():
    try:
        r2n.Model.bundled(device="gpu")
        return None
    except RuntimeError as e:
        if os.environ.get("REQUIRE_GPU") == "1":
            raise AssertionError(f"REQUIRE_GPU=1 but no GPU is usable: {e}")
        return str(e)


_GPU_PROBLEM = _gpu_usable()


def skip_without(device):
    """Skips a GPU test without an adapter (unless REQUIRE_GPU=1, which fails the run instead)."""
    if device == "gpu" and _GPU_PROBLEM is not None:
        pytest.skip(f"no GPU: {_GPU_PROBLEM}")


@pytest.fixture(scope="session")
def gpu_or_cpu():
    """The GPU when there is one, else the CPU."""
    return "cpu" if _GPU_PROBLEM is not None else "gpu"
