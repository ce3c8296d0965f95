"""The Python module against PyTorch's fixtures, with hostile arrays, broken checkpoints and threads."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import res2net_wgpu as r2n
from conftest import SAMPLES, fixture_names, golden, skip_without, weights

SMALL = "seed_se_s4"
# Every fixture on the CPU; on the GPU (whose every fixture the Rust tests check) one of each kind:
# seed with SE, seed with groups and batch 3, timm deep stem with avg-down, a bf16 checkpoint.
ON_GPU = ["seed_se_s4", "seed_groups2_s8", "timm_res2net50d_style", "timm_res2net_bf16"]
RUNS = [("cpu", n) for n in fixture_names()] + [("gpu", n) for n in ON_GPU]


def assert_close(ours, torch, what):
    assert ours.shape == torch.shape, what
    np.testing.assert_allclose(ours, torch, rtol=1e-4, atol=1e-4, err_msg=what)


@pytest.mark.parametrize("device, name", RUNS)
def test_outputs_equal_pytorch(device, name):
    skip_without(device)
    g = golden(name)
    m = r2n.Model(weights(name), device=device)
    out = m.infer(g["input"])
    assert set(out) == {"logits", "probs"}
    for key in ("logits", "probs"):
        assert out[key].dtype == np.float32
        assert_close(out[key], g[key], f"{name} {key} on {device}")
    assert m.num_classes == g["logits"].shape[1]


def test_attributes():
    m = r2n.Model(str(weights(SMALL)), device="cpu")
    assert isinstance(m.arch, str) and m.arch
    assert m.num_classes == 5
    assert m.device == "cpu"
    assert m.fallback_reason is None
    assert m.precision == "f32"
    assert m.labels == [f"class {i}" for i in range(5)]
    assert m.input_size == (224, 224)
    assert "num_classes=5" in repr(m)
    assert isinstance(r2n.__version__, str)


def test_arch_forces_a_preset_and_must_fit():
    m = r2n.Model(weights("timm_res2net_s4"), device="cpu", arch=None)
    with pytest.raises(ValueError, match="res2net50_26w_4s"):
        r2n.Model(weights("timm_res2net_s4"), device="cpu", arch="res2net50_26w_4s")
    assert m.arch


def test_bundled_model_classifies_the_samples():
    m = r2n.Model.bundled(device="cpu")
    assert m.labels == [str(d) for d in range(10)]
    paths = [SAMPLES / f"digit_{d}.png" for d in range(10)]
    result = m.classify(paths, top=3)
    assert len(result) == 10
    right = 0
    for digit, top in enumerate(result):
        assert len(top) == 3
        (label, prob), *_ = top
        assert isinstance(label, str) and isinstance(prob, float)
        assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
        right += label == str(digit)
    assert right >= 9, result
    assert m.classify([], top=5) == []
    assert len(m.classify([str(paths[0])], top=50)[0]) == 10  # at most every class


def test_classify_refuses_bad_images():
    m = r2n.Model.bundled(device="cpu")
    with pytest.raises(ValueError, match="PNG or JPEG"):
        m.classify([weights(SMALL)])
    with pytest.raises(ValueError, match="expected a readable file"):
        m.classify([SAMPLES / "missing.png"])
    with pytest.raises(ValueError, match="top"):
        m.classify([SAMPLES / "digit_0.png"], top=0)
    with pytest.raises(TypeError):
        m.classify(str(SAMPLES / "digit_0.png"))  # a list of paths, not one string


def test_other_layouts_and_dtypes_are_converted_never_misread():
    m = r2n.Model(weights(SMALL), device="cpu")
    x = golden(SMALL)["input"]
    want = m.infer(np.ascontiguousarray(x, dtype=np.float32))["logits"]
    variants = {
        "float64": x.astype(np.float64),
        "fortran order": np.asfortranarray(x),
        "big endian": x.astype(">f4"),
        "strided view": np.repeat(x, 2, axis=3)[:, :, :, ::2],
        "negative strides": np.flip(np.flip(x, 3).copy(), 3),
        "nested lists": x.tolist(),
    }
    for what, v in variants.items():
        np.testing.assert_array_equal(m.infer(v)["logits"], want, err_msg=what)
    # float16 is widened exactly.
    half = x.astype(np.float16)
    np.testing.assert_array_equal(
        m.infer(half)["logits"], m.infer(half.astype(np.float32))["logits"]
    )
    # A reversed batch gives the rows reversed.
    np.testing.assert_array_equal(m.infer(x[::-1])["logits"], want[::-1])
    # Integers are real numbers: converted, not refused.
    ints = np.zeros((1, 3, 32, 32), dtype=np.int32)
    assert m.infer(ints)["logits"].shape == (1, 5)


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((3, 32, 32), np.float32), r"shape \[3, 32, 32\]"),
        (np.zeros((1, 4, 32, 32), np.float32), r"shape \[1, 4, 32, 32\]"),
        (np.zeros((1, 3, 32, 32), np.complex64), "dtype"),
        (np.zeros((1, 3, 32, 32), bool), "dtype"),
        (np.zeros((1, 3, 32, 32), object), "dtype"),
        (np.zeros((0, 3, 32, 32), np.float32), "at least one image"),
        (np.full((1, 3, 32, 32), np.nan, np.float32), "NaN"),
        (np.full((1, 3, 32, 32), np.inf, np.float32), "inf"),
        (np.zeros((1, 3, 0, 32), np.float32), "height and width"),
        ("not an array", "shape"),
    ],
)
def test_bad_arrays_raise_value_error(x, match):
    m = r2n.Model(weights(SMALL), device="cpu")
    with pytest.raises(ValueError, match=match) as e:
        m.infer(x)
    message = str(e.value)
    assert "\n" not in message and "expected" in message, message


def test_broken_checkpoints_and_options_raise_value_error(tmp_path):
    good = weights(SMALL)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    truncated = tmp_path / "truncated.safetensors"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    cases = [
        dict(path=tmp_path / "missing.safetensors"),
        dict(path=garbage),
        dict(path=truncated),
        dict(path=empty),
        dict(path=tmp_path),
        dict(path=good, device="tpu"),
        dict(path=good, precision="f8"),
        dict(path=good, arch="res2net9000"),
        dict(path=SAMPLES / "digit_0.png"),
    ]
    for kwargs in cases:
        kwargs.setdefault("device", "cpu")
        with pytest.raises(ValueError) as e:
            r2n.Model(**kwargs)
        message = str(e.value)
        assert "\n" not in message and "expected" in message, (kwargs, message)


def test_threads_share_a_model_and_get_identical_results(gpu_or_cpu):
    m = r2n.Model(weights(SMALL), device=gpu_or_cpu)
    g = golden(SMALL)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: m.infer(g["input"])["logits"], range(12)))
    for r in results:
        np.testing.assert_array_equal(r, results[0])
    assert_close(results[0], g["logits"], "threaded logits")


def test_the_gil_is_released_while_the_model_runs():
    m = r2n.Model(weights(SMALL), device="cpu")
    x = np.random.default_rng(0).standard_normal((4, 3, 160, 160)).astype(np.float32)
    m.infer(x)  # build the executor for this shape
    start = time.perf_counter()
    m.infer(x)
    alone = time.perf_counter() - start
    assert alone > 0.05, f"the run is too short ({alone:.3f} s) to tell"

    done = threading.Event()

    def work():
        m.infer(x)
        done.set()

    worker = threading.Thread(target=work)
    last, worst = time.perf_counter(), 0.0
    worker.start()
    while not done.is_set():
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
    worker.join()
    # Holding the GIL would stall this loop for the whole run.
    assert worst < alone / 2, f"this thread stalled {worst:.3f} s during a {alone:.3f} s run"


def test_the_fixture_set_is_complete():
    assert len(fixture_names()) >= 11
