"""Backbone mode: every features fixture's maps against timm's, the feature points, and the index
lists and inputs that are refused."""

import json

import numpy as np
import pytest

import res2net_wgpu as r2n
from conftest import FIXTURES, read_safetensors, skip_without, weights


def features_fixtures():
    return sorted(p.name[: -len(".features.safetensors")] for p in FIXTURES.glob("*.features.safetensors"))


def timm_features(name):
    """The fixture's input, timm's maps by module name, and the out_indices sets timm ran."""
    path = FIXTURES / f"{name}.features.safetensors"
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    sets = json.loads(header["__metadata__"]["out_indices"])
    tensors = read_safetensors(path)
    return tensors.pop("input"), tensors, sets


RUNS = [(d, n) for d in ("cpu", "gpu") for n in features_fixtures()]


def test_there_are_features_fixtures():
    assert len(features_fixtures()) >= 6


@pytest.mark.parametrize("device, name", RUNS)
def test_feature_maps_equal_timm(device, name):
    skip_without(device)
    x, timm, sets = timm_features(name)
    m = r2n.Model(weights(name), device=device)
    for out_indices in sets:
        maps = m.features(x, out_indices=out_indices)
        assert list(maps) == sorted(out_indices)
        for index, ours in maps.items():
            point = m.points[index]
            what = f"{name} {out_indices} {point.name} on {device}"
            assert ours.dtype == np.float32 and ours.flags.c_contiguous, what
            assert ours.shape == timm[point.name].shape, what
            assert ours.shape[1] == point.channels, what
            np.testing.assert_allclose(ours, timm[point.name], rtol=1e-4, atol=1e-4, err_msg=what)


def test_defaults_and_points():
    m = r2n.Model(weights("seed_se_s4"), device="cpu")
    names = [(p.index, p.name, p.reduction) for p in m.points]
    assert names == [(0, "act1", 2), (1, "layer1", 4), (2, "layer2", 8), (3, "layer3", 16), (4, "layer4", 32)]
    assert [p.channels for p in m.points] == [16, 64, 128, 256, 512]
    assert "layer2" in repr(m.points[2])
    assert m.default_out_indices == [0, 1, 2, 3, 4]
    x, timm, _ = timm_features("seed_se_s4")
    maps = m.features(x)
    assert list(maps) == m.default_out_indices
    # Any order in, ascending out; other dtypes and layouts are converted as infer converts them.
    again = m.features(np.asfortranarray(x.astype(np.float64)), out_indices=(3, 1))
    assert list(again) == [1, 3]
    np.testing.assert_array_equal(again[3], maps[3])
    dla = r2n.Model(weights("timm_dla60_res2net_narrow"), device="cpu")
    assert [p.name for p in dla.points] == [f"level{i}" for i in range(6)]
    assert dla.default_out_indices == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "out_indices, found",
    [([5], "out of range"), ([], "empty"), ([1, 1], "twice"), ([-1], "-1")],
)
def test_bad_indices_raise_value_error(out_indices, found):
    m = r2n.Model(weights("seed_se_s4"), device="cpu")
    x, _, _ = timm_features("seed_se_s4")
    with pytest.raises(ValueError, match=found):
        m.features(x, out_indices=out_indices)


def test_bad_inputs_raise_value_error():
    m = r2n.Model(weights("seed_se_s4"), device="cpu")
    with pytest.raises(ValueError, match="shape"):
        m.features(np.zeros((1, 4, 32, 32), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        m.features(np.zeros((1, 3, 32, 32), np.complex64))
    x = np.zeros((1, 3, 32, 32), np.float32)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.features(x, out_indices=[1])
