#!/usr/bin/env python3
"""Writes the hostile-input corpus that tests/hostile.rs feeds to the `res2net` command and the library.

Plain Python 3, standard library only: safetensors headers are written by hand with struct/json, PNGs
with zlib, JPEG/GIF/BMP headers byte by byte. Deterministic: running it twice gives identical files.

    python3 tests/hostile/make_corpus.py

Layout (all paths relative to this directory):
    valid/     positive controls: small, well-formed checkpoints, inputs and images that must work
    weights/   broken checkpoints, run as `--weights` with valid/input_16.safetensors
    classify_weights/  checkpoints whose preprocessing or label metadata is broken, run as
               `classify --weights X valid/gradient.png`
    inputs/    broken input tensors, run as `--input` with valid/tiny_seed.safetensors
    images/    broken or hostile images, run through `classify` with the bundled model
    MANIFEST.tsv   one line per file: path, then the phrases its error message must contain ('|'-separated;
                   'OK' for valid files), then a description
"""

import json
import os
import random
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}

MANIFEST = []


def write(rel, data, needles, description):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    assert "\t" not in needles and "\t" not in description
    MANIFEST.append((rel, needles, description))


# ---------------------------------------------------------------------------------------------------
# safetensors writing


class T:
    """One tensor: dtype name, shape and raw little-endian bytes."""

    def __init__(self, dtype, shape, data):
        self.dtype, self.shape, self.data = dtype, list(shape), bytes(data)


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def header_json(header):
    return json.dumps(header, separators=(",", ":")).encode()


def raw_file(header_bytes, data, declared_len=None, pad=b" "):
    """`header_bytes` padded to 8 bytes with `pad`, behind a length prefix (default: the true one)."""
    if pad:
        while len(header_bytes) % 8:
            header_bytes += pad
    n = len(header_bytes) if declared_len is None else declared_len
    return struct.pack("<Q", n) + header_bytes + data


def build(tensors, metadata=None, edit=None):
    """A safetensors file of `tensors` (name -> T), data laid out in name order. `edit(header)` may
    change the header dict after the offsets are filled in."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name in sorted(tensors):
        t = tensors[name]
        header[name] = {
            "dtype": t.dtype,
            "shape": t.shape,
            "data_offsets": [len(data), len(data) + len(t.data)],
        }
        data += t.data
    if edit:
        edit(header)
    return raw_file(header_json(header), data)


# ---------------------------------------------------------------------------------------------------
# valid models, laid out exactly as src/graph/build.rs asks for them

rng = random.Random(20240601)


def conv_w(cout, cin, k):
    fan = max(cin * k * k, 1)
    a = (3.0 / fan) ** 0.5
    return T("F32", [cout, cin, k, k], f32([rng.uniform(-a, a) for _ in range(cout * cin * k * k)]))


def vec(n, lo, hi):
    return T("F32", [n], f32([rng.uniform(lo, hi) for _ in range(n)]))


def add_bn(d, key, c):
    d[key + ".weight"] = vec(c, 0.5, 1.5)
    d[key + ".bias"] = vec(c, -0.1, 0.1)
    d[key + ".running_mean"] = vec(c, -0.1, 0.1)
    d[key + ".running_var"] = vec(c, 0.5, 2.0)


def seed_model(layers, classes, width, scales, groups, se):
    """The seed flavour (`arch::seed`): biased convs, first chunk passes through."""
    d = {}
    planes = [width * scales << i for i in range(4)]
    stem = width * scales
    d["conv1.weight"] = conv_w(stem, 3, 7)
    add_bn(d, "bn1", stem)
    cin = stem
    for s in range(4):
        cout = 4 * planes[s]
        w = groups * planes[s] // scales
        for b in range(layers[s]):
            name = "layer%d.%d" % (s + 1, b)
            stride = 2 if (b == 0 and s > 0) else 1
            if stride != 1 or cin != cout:
                d[name + ".downsample.0.weight"] = conv_w(cout, cin, 1)
                d[name + ".downsample.0.bias"] = vec(cout, -0.1, 0.1)
                add_bn(d, name + ".downsample.1", cout)
            d[name + ".conv1.weight"] = conv_w(w * scales, cin, 1)
            d[name + ".conv1.bias"] = vec(w * scales, -0.1, 0.1)
            add_bn(d, name + ".bn1", w * scales)
            for k in range(1, scales):
                d[name + ".conv2.%d.weight" % (k - 1)] = conv_w(w, w // groups, 3)
                d[name + ".conv2.%d.bias" % (k - 1)] = vec(w, -0.1, 0.1)
                add_bn(d, name + ".bn2.%d" % (k - 1), w)
            d[name + ".conv3.weight"] = conv_w(cout, w * scales, 1)
            d[name + ".conv3.bias"] = vec(cout, -0.1, 0.1)
            add_bn(d, name + ".bn3", cout)
            if se:
                r = cout // 16
                d[name + ".se.fc1.weight"] = conv_w(r, cout, 1)
                d[name + ".se.fc1.bias"] = vec(r, -0.1, 0.1)
                d[name + ".se.fc2.weight"] = conv_w(cout, r, 1)
                d[name + ".se.fc2.bias"] = vec(cout, -0.1, 0.1)
            cin = cout
    d["fc.weight"] = T("F32", [classes, cin], conv_w(classes, cin, 1).data)
    d["fc.bias"] = vec(classes, -0.1, 0.1)
    return d


def official_model(layers, planes, stem, base_width, scale, classes):
    """The official/timm flavour with a 7x7 stem, conv downsample, no SE, cardinality 1."""
    d = {}
    d["conv1.weight"] = conv_w(stem, 3, 7)
    add_bn(d, "bn1", stem)
    cin = stem
    for s in range(4):
        cout = 4 * planes[s]
        w = planes[s] * base_width // 64
        for b in range(layers[s]):
            name = "layer%d.%d" % (s + 1, b)
            stride = 2 if (b == 0 and s > 0) else 1
            if stride != 1 or cin != cout:
                d[name + ".downsample.0.weight"] = conv_w(cout, cin, 1)
                add_bn(d, name + ".downsample.1", cout)
            d[name + ".conv1.weight"] = conv_w(w * scale, cin, 1)
            add_bn(d, name + ".bn1", w * scale)
            for i in range(max(scale - 1, 1)):
                d[name + ".convs.%d.weight" % i] = conv_w(w, w, 3)
                add_bn(d, name + ".bns.%d" % i, w)
            d[name + ".conv3.weight"] = conv_w(cout, w * scale, 1)
            add_bn(d, name + ".bn3", cout)
            cin = cout
    d["fc.weight"] = T("F32", [classes, cin], conv_w(classes, cin, 1).data)
    d["fc.bias"] = vec(classes, -0.1, 0.1)
    return d


def dla_model(levels, channels, base_width, cardinality, scale, classes):
    """The DLA layout (`arch::dla`, timm's DLA with DlaBottle2neck), with its own random numbers so
    the files made before it keep their bytes."""
    global rng
    saved, rng = rng, random.Random(20250101)
    try:
        d = {}
        d["base_layer.0.weight"] = conv_w(channels[0], 3, 7)
        add_bn(d, "base_layer.1", channels[0])
        cin = channels[0]
        for level in (0, 1):
            for i in range(levels[level]):
                d["level%d.%d.weight" % (level, 3 * i)] = conv_w(channels[level], cin, 3)
                add_bn(d, "level%d.%d" % (level, 3 * i + 1), channels[level])
                cin = channels[level]

        def block(name, cin, cout):
            w = cout * base_width // 64 * cardinality // 2
            d[name + ".conv1.weight"] = conv_w(w * scale, cin, 1)
            add_bn(d, name + ".bn1", w * scale)
            for i in range(max(scale - 1, 1)):
                d[name + ".convs.%d.weight" % i] = conv_w(w, w // cardinality, 3)
                add_bn(d, name + ".bns.%d" % i, w)
            d[name + ".conv3.weight"] = conv_w(cout, w * scale, 1)
            add_bn(d, name + ".bn3", cout)

        def tree(key, depth, cin, cout, level_root, root_dim):
            root_dim = (root_dim or 2 * cout) + (cin if level_root else 0)
            if depth > 1:
                tree(key + ".tree1", depth - 1, cin, cout, False, 0)
                tree(key + ".tree2", depth - 1, cout, cout, False, root_dim + cout)
                return
            block(key + ".tree1", cin, cout)
            block(key + ".tree2", cout, cout)
            if cin != cout:
                d[key + ".project.0.weight"] = conv_w(cout, cin, 1)
                add_bn(d, key + ".project.1", cout)
            d[key + ".root.conv.weight"] = conv_w(cout, root_dim, 1)
            add_bn(d, key + ".root.bn", cout)

        for level in range(2, 6):
            tree("level%d" % level, levels[level], cin, channels[level], level >= 3, 0)
            cin = channels[level]
        d["fc.weight"] = conv_w(classes, cin, 1)
        d["fc.bias"] = vec(classes, -0.1, 0.1)
        return d
    finally:
        rng = saved


TINY = seed_model([1, 1, 1, 1], 3, 1, 1, 1, False)  # arch::seed([1,1,1,1], 3, 1, 1, 1, false)
TINY_CONFIG = {
    "flavour": "seed",
    "layers": [1, 1, 1, 1],
    "planes": [1, 2, 4, 8],
    "stem": {"kind": "conv7", "channels": 1},
    "base_width": 1,
    "scale": 1,
    "cardinality": 1,
    "avg_down": False,
    "se": False,
    "num_classes": 3,
}
SMALL_SE = seed_model([1, 1, 1, 1], 3, 1, 4, 1, True)  # arch::seed([1,1,1,1], 3, 1, 4, 1, true)
OFFICIAL = official_model([1, 1, 1, 1], [1, 2, 4, 8], 4, 64, 2, 3)
# Two tensors: enough for errors that concern the file format, not the network.
HEAD_ONLY = {"fc.weight": T("F32", [3, 2], f32([0.25] * 6)), "fc.bias": T("F32", [3], f32([0.0] * 3))}


def to_f16(model):
    return dict((k, T("F16", v.shape, struct.pack("<%de" % numel(v.shape), *struct.unpack("<%df" % numel(v.shape), v.data))))
                for k, v in model.items())


TINY16 = to_f16(TINY)


def tiny(**changes):
    """The tiny seed model with some tensors replaced (a value of None removes the tensor)."""
    d = dict(TINY)
    for k, v in changes.items():
        k = k.replace("__", ".")
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    return d


def input_tensor(n, h, w, values=None):
    vals = values if values is not None else [rng.uniform(-1, 1) for _ in range(n * 3 * h * w)]
    return {"input": T("F32", [n, 3, h, w], f32(vals))}


# ---------------------------------------------------------------------------------------------------
# images


def png_chunk(kind, body, crc=None):
    c = zlib.crc32(kind + body) & 0xFFFFFFFF if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", c)


def png(width, height, bit_depth=8, color=2, rows=None, level=9, ihdr_crc=None):
    """A PNG; `rows` is the raw filtered scanline data (default: all zero)."""
    sig = b"\x89PNG\r\n\x1a\n"
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    if rows is None:
        channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
        row_bytes = (width * channels * bit_depth + 7) // 8
        rows = (b"\x00" + b"\x00" * row_bytes) * height
    idat = zlib.compress(rows, level)
    return sig + png_chunk(b"IHDR", ihdr, ihdr_crc) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def gradient_png(width, height):
    rows = b""
    for y in range(height):
        rows += b"\x00" + bytes(
            v for x in range(width) for v in ((x * 37) % 256, (y * 59) % 256, ((x + y) * 11) % 256)
        )
    return png(width, height, rows=rows)


def jpeg_header(width, height):
    """SOI, a quantisation table, a baseline SOF0 declaring the size, a Huffman table, SOS, EOI:
    enough for a decoder to read the dimensions, then no scan data."""
    soi = b"\xff\xd8"
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes([1] * 64)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    # DC table 0: one code of length 1 for category 0.
    dht = b"\xff\xc4" + struct.pack(">H", 20) + b"\x00" + bytes([1] + [0] * 15) + b"\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00" + b"\x00\x3f\x00"
    return soi + app0 + dqt + sof + dht + sos


def main():
    # -- positive controls --------------------------------------------------------------------------
    write("valid/tiny_seed.safetensors", build(TINY), "OK",
          "seed flavour, layers [1,1,1,1], width 1, scales 1, 3 classes: the base of most broken files")
    write("valid/tiny_official.safetensors", build(OFFICIAL), "OK",
          "official flavour, planes [1,2,4,8], base width 64, scale 2, 7x7 stem with 4 channels")
    write("valid/tiny_seed_meta.safetensors", build(TINY, {"res2net.config": json.dumps(TINY_CONFIG)}),
          "OK", "the tiny seed model with its config in the res2net.config metadata")
    write("valid/input_16.safetensors", build(input_tensor(1, 16, 16)), "OK", "input [1,3,16,16]")
    write("valid/input_1x1.safetensors", build(input_tensor(2, 1, 1)),
          "OK", "input [2,3,1,1]: 1x1 images are valid, the network's padding covers them")
    write("valid/gradient.png", gradient_png(20, 12), "OK", "a 20x12 RGB PNG")
    write("valid/aspect_1x4096.png", gradient_png(4096, 1), "OK",
          "a 4096x1 PNG: the resize before the centre crop must not build a 256 x 1M image")

    # -- broken checkpoints -------------------------------------------------------------------------
    good = build(TINY)
    n_good = struct.unpack("<Q", good[:8])[0]
    # Format-level damage is done to a two-tensor file, to keep the corpus small.
    small = build(HEAD_ONLY)
    n_small = struct.unpack("<Q", small[:8])[0]
    head_good = small[8:8 + n_small]
    data_good = small[8 + n_small:]

    def w(name, data, needles, description):
        write("weights/" + name + ".safetensors", data, needles, description)

    w("empty", b"", "empty file", "zero bytes")
    w("short", b"\x01\x02\x03", "8-byte header", "three bytes")
    w("text", b"this is not a checkpoint, only a text file renamed\n", "expected", "a text file")
    w("png_renamed", gradient_png(4, 4), "expected", "a PNG renamed .safetensors")
    w("truncated", good[: len(good) // 2], "expected|found", "the tiny model cut in half")
    w("truncated_in_header", good[: 8 + n_good // 2], "expected the declared header to fit",
      "cut inside the JSON header")
    w("trailing_bytes", small + b"\x00" * 13, "expected the tensor data to fill the file exactly",
      "13 bytes after the last tensor")
    w("header_len_2pow40", raw_file(head_good, data_good, declared_len=1 << 40), "header of at most",
      "header length field says 1 TiB")
    w("header_len_u64max", raw_file(head_good, data_good, declared_len=(1 << 64) - 1), "header",
      "header length field is 2^64-1")
    w("header_len_past_end", raw_file(head_good, data_good, declared_len=len(small) + 1000),
      "expected the declared header to fit", "header length 1000 bytes past the end of the file")
    w("header_len_short", raw_file(head_good, data_good, declared_len=n_small - 40), "JSON",
      "header length 40 bytes short: the JSON is cut")
    w("header_len_long", raw_file(head_good, data_good, declared_len=n_small + 16), "expected",
      "header length 16 bytes long: tensor bytes read as JSON")
    w("header_len_zero", raw_file(b"", b"", declared_len=0, pad=None), "JSON", "an empty header")
    w("header_nul_padded", raw_file(b"{}", b"", pad=b"\x00"), "JSON", "header padded with NUL bytes")
    w("header_non_utf8", raw_file(b'{"a\xff\xfe":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
                                  f32([1.0])), "UTF-8", "invalid UTF-8 in the header")
    w("header_array", raw_file(b"[]", b""), "JSON", "the header is a JSON array")
    w("header_string", raw_file(b'"fc.weight"', b""), "JSON", "the header is a JSON string")
    w("header_number", raw_file(b"42", b""), "JSON", "the header is a JSON number")
    w("header_null", raw_file(b"null", b""), "JSON", "the header is JSON null")
    w("header_invalid_json", raw_file(b'{"fc.weight":{"dtype":', b""), "JSON", "unterminated JSON")
    w("header_entry_not_object", raw_file(b'{"fc.weight":[1,2,3]}', b""), "JSON",
      "a tensor entry that is an array")
    w("header_missing_field", raw_file(b'{"fc.weight":{"dtype":"F32","shape":[1]}}', b""), "JSON",
      "a tensor entry without data_offsets")
    w("header_negative_shape",
      raw_file(b'{"fc.weight":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,16]}}', b"\0" * 16), "JSON",
      "a negative dimension")
    w("header_float_shape",
      raw_file(b'{"fc.weight":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}', b"\0" * 4), "JSON",
      "a fractional dimension")
    w("header_shape_2pow64",
      raw_file(b'{"fc.weight":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}}',
               b"\0" * 4), "JSON", "a dimension of 2^64")
    w("dtype_unknown", build(HEAD_ONLY, edit=lambda h: h["fc.bias"].update(dtype="F128")), "JSON",
      "dtype F128")
    w("dtype_lowercase", build(HEAD_ONLY, edit=lambda h: h["fc.bias"].update(dtype="f32")), "JSON",
      "dtype f32 in lower case")
    w("duplicate_keys",
      raw_file(b'{"fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
               b'"fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32([1.0, 2.0])),
      "expected", "the same tensor name twice with different offsets")
    w("metadata_not_strings", build(HEAD_ONLY, edit=lambda h: h.update({"__metadata__": {"a": 1}})), "JSON",
      "__metadata__ with a number value")
    w("metadata_array", build(HEAD_ONLY, edit=lambda h: h.update({"__metadata__": ["a"]})), "JSON",
      "__metadata__ that is an array")

    def offsets(name, start, end):
        return lambda h: h[name].update(data_offsets=[start, end])

    base = HEAD_ONLY
    last = sorted(base)[-1]
    first = sorted(base)[0]
    end = sum(len(t.data) for t in base.values())
    w("offsets_past_end", build(base, edit=offsets(last, end - len(base[last].data), end + 4096)),
      "expected", "the last tensor ends 4 KiB past the end of the file")
    w("offsets_overlap", build(base, edit=offsets(sorted(base)[1], 0, len(base[sorted(base)[1]].data))),
      "offsets", "two tensors starting at byte 0")
    w("offsets_gap", build(base, edit=offsets(last, end - len(base[last].data) + 4, end + 4)), "expected",
      "a 4-byte gap before the last tensor")
    w("offsets_reversed", build(base, edit=offsets(first, 12, 0)), "offsets", "end before start")
    w("offsets_u64max", build(base, edit=offsets(last, end - len(base[last].data), (1 << 64) - 1)),
      "expected", "the last tensor ends at 2^64-1")
    # Eight U8 tensors of 2^61 - 1 bytes each: consistent shapes and contiguous offsets, ending at
    # 2^64 - 8, so adding the header length to the end offset overflows a 64-bit integer.
    big = (1 << 61) - 1
    w("offsets_sum_overflow",
      raw_file(header_json({"t%d" % k: {"dtype": "U8", "shape": [big], "data_offsets": [k * big, (k + 1) * big]}
                            for k in range(8)}), b""),
      "expected", "offsets that add up to 2^64 - 8 (16 EiB declared, 0 bytes present)")
    w("shape_terabytes", build(TINY, edit=lambda h: h["conv1.weight"].update(shape=[1 << 20, 1 << 20, 1024])),
      "expected|found", "conv1.weight declared [2^20, 2^20, 1024]: 4 PiB, with its real 588-byte range")
    w("shape_terabytes_consistent",
      raw_file(header_json({"fc.weight": {"dtype": "F32", "shape": [1 << 38], "data_offsets": [0, 1 << 40]}}),
               b"\0" * 64), "expected", "a 1 TiB tensor with matching offsets in a 64-byte file")
    w("shape_overflow",
      raw_file(header_json({"fc.weight": {"dtype": "F32", "shape": [1 << 62, 1 << 62], "data_offsets": [0, 0]}}),
               b""), "expected tensor sizes that fit", "a shape whose element count overflows 64 bits")
    w("zero_size_huge_classes", build(tiny(fc__weight=T("F32", [1 << 62, 0], b""))), "expected|classes",
      "fc.weight [2^62, 0]: no bytes, 2^62 classes")
    w("zero_size_huge_planes", build(tiny(layer1__0__conv3__weight=T("F32", [1 << 62, 0, 1, 1], b""))),
      "expected", "seed layer1.0.conv3 [2^62, 0, 1, 1]: no bytes, 2^60 planes")
    off = dict(OFFICIAL)
    off["layer1.0.conv3.weight"] = T("F32", [1 << 62, 0, 1, 1], b"")
    w("official_zero_size_huge_planes", build(off), "expected",
      "official layer1.0.conv3 [2^62, 0, 1, 1]: 2^60 planes in the base-width search")
    off = dict(OFFICIAL)
    off["layer1.0.convs.0.weight"] = T("F32", [1 << 62, 1, 3, 0], b"")
    w("official_zero_size_huge_cardinality", build(off), "expected",
      "official layer1.0.convs.0 [2^62, 1, 3, 0]: cardinality 2^62")

    # Wrong dtypes, shapes and ranks.
    def as_dtype(t, dtype):
        return T(dtype, t.shape, b"\x01" * (numel(t.shape) * DTYPE_SIZE[dtype]))

    w("dtype_i64_weight", build(tiny(conv1__weight=as_dtype(TINY["conv1.weight"], "I64"))), "dtype|I64",
      "conv1.weight stored as I64")
    w("dtype_u8_weight", build(tiny(fc__weight=as_dtype(TINY["fc.weight"], "U8"))), "dtype|U8",
      "fc.weight stored as U8")
    w("dtype_bool_weight", build(tiny(bn1__running_var=as_dtype(TINY["bn1.running_var"], "BOOL"))),
      "dtype|BOOL", "bn1.running_var stored as BOOL")
    w("dtype_f64_weight", build(tiny(fc__bias=as_dtype(TINY["fc.bias"], "F64"))), "dtype|F64",
      "fc.bias stored as F64")
    w("shape_wrong", build(tiny(fc__weight=T("F32", [3, 31], TINY["fc.weight"].data[:3 * 31 * 4]))),
      "expected shape [3, 32], found [3, 31]", "fc.weight [3, 31] instead of [3, 32]")
    w("shape_transposed", build(tiny(layer1__0__conv3__weight=T("F32", [1, 4, 1, 1],
                                                                 TINY["layer1.0.conv3.weight"].data))),
      "divisible by 4", "layer1.0.conv3.weight [1, 4, 1, 1] instead of [4, 1, 1, 1]")
    w("rank0_bias", build(tiny(fc__bias=T("F32", [], f32([0.5])))), "expected shape [3], found []",
      "fc.bias as a rank-0 scalar")
    w("rank5_weight", build(tiny(conv1__weight=T("F32", [1, 3, 7, 7, 1], TINY["conv1.weight"].data))),
      "expected shape [1, 3, 7, 7], found [1, 3, 7, 7, 1]", "conv1.weight with a fifth dimension")
    w("rank1_fc", build(tiny(fc__weight=T("F32", [96], TINY["fc.weight"].data))), "expected",
      "fc.weight flattened to rank 1")
    w("missing_tensor", build(tiny(layer2__0__bn1__running_var=None)),
      "expected tensor 'layer2.0.bn1.running_var'", "one BatchNorm statistic missing")
    w("extra_tensor", build(tiny(decoder__weight=T("F32", [2, 2], f32([0.0] * 4)))),
      "expected no tensor 'decoder.weight'", "an unrelated extra tensor")
    w("zero_classes", build(tiny(fc__weight=T("F32", [0, 32], b""), fc__bias=T("F32", [0], b""))),
      "classes", "fc.weight [0, 32]: no classes")
    w("mixed_prefix", build({("module." + k if k.startswith("fc") else k): v for k, v in TINY.items()}),
      "expected", "'module.' on the fc keys only")
    named = dict(HEAD_ONLY)
    named["fc.bias\nerror: a forged second line"] = named.pop("fc.bias")
    w("name_with_newline", build(named), "without control characters|\\n",
      "a tensor name with a newline (found by the checkpoint fuzzer): messages must stay on one line")
    named = dict(HEAD_ONLY)
    named["fc.bias\x1b[2J"] = named.pop("fc.bias")
    w("name_with_escape", build(named), "without control characters|\\u{1b}",
      "a tensor name with a terminal escape sequence")
    w("no_tensors", raw_file(b"{}", b""), "fc.weight", "a valid file with no tensors")
    w("only_metadata", raw_file(header_json({"__metadata__": {"format": "pt"}}), b""), "fc.weight",
      "metadata and no tensors")

    # Unrelated models.
    resnet = {}
    resnet["conv1.weight"] = conv_w(4, 3, 7)
    add_bn(resnet, "bn1", 4)
    for s in range(4):
        for k in (1, 2):
            resnet["layer%d.0.conv%d.weight" % (s + 1, k)] = conv_w(4, 4, 3)
            add_bn(resnet, "layer%d.0.bn%d" % (s + 1, k), 4)
    resnet["fc.weight"] = T("F32", [10, 4], f32([0.1] * 40))
    resnet["fc.bias"] = vec(10, 0, 1)
    w("resnet_like", build(resnet), "found neither", "a tiny ResNet-18-like state dict")
    resnet50 = dict(resnet)
    resnet50["layer1.0.conv3.weight"] = conv_w(16, 4, 1)
    w("resnet50_like", build(resnet50), "found neither", "a ResNet-50-like bottleneck (plain conv2)")
    gpt = {
        "wte.weight": T("F32", [16, 8], f32([0.0] * 128)),
        "wpe.weight": T("F32", [4, 8], f32([0.0] * 32)),
        "h.0.ln_1.weight": vec(8, 1, 1),
        "h.0.attn.c_attn.weight": T("F32", [8, 24], f32([0.0] * 192)),
        "h.0.mlp.c_fc.weight": T("F32", [8, 32], f32([0.0] * 256)),
        "ln_f.weight": vec(8, 1, 1),
    }
    w("gpt_like", build(gpt, {"format": "pt"}), "expected tensor 'fc.weight'", "a tiny GPT-2-like state dict")
    vit = {"patch_embed.proj.weight": conv_w(8, 3, 4), "head.weight": T("F32", [10, 8], f32([0.0] * 80))}
    w("vit_like", build(vit), "expected tensor 'fc.weight'", "a ViT-like state dict")
    w("conv3_not_div4", build(tiny(layer1__0__conv3__weight=T("F32", [6, 1, 1, 1], f32([0.1] * 6)))),
      "divisible by 4", "layer1.0.conv3 with 6 output channels")

    # Bogus res2net.config metadata.
    def meta(name, config, needles, description):
        text = config if isinstance(config, str) else json.dumps(config)
        # The config is checked before any tensor, so only the mismatch needs the real tensors.
        base = TINY if name == "mismatch" else HEAD_ONLY
        w("meta_" + name, build(base, {"res2net.config": text}), needles, description)

    def cfg(**changes):
        c = dict(TINY_CONFIG)
        c.update(changes)
        return c

    meta("invalid_json", '{"flavour": "seed", "layers": [1,1', "expected a Res2Net config in JSON",
         "res2net.config is cut-off JSON")
    meta("not_object", "[1, 2, 3]", "expected a Res2Net config in JSON", "res2net.config is an array")
    meta("newline_in_value", cfg(flavour="seed\nerror: a forged second line"), "\\n",
         "a flavour with a newline, quoted back by the JSON error")
    meta("unknown_flavour", cfg(flavour="transformer"), "expected a Res2Net config in JSON",
         "flavour 'transformer'")
    meta("negative_layers", cfg(layers=[-1, 1, 1, 1]), "expected a Res2Net config in JSON", "layers [-1,1,1,1]")
    meta("three_stages", cfg(layers=[1, 1, 1]), "expected a Res2Net config in JSON", "only three stages")
    meta("layers_zero", cfg(layers=[0, 0, 0, 0]), "at least one block per stage", "layers [0,0,0,0]")
    meta("layers_huge", cfg(layers=[100000, 1, 1, 1]), "at most 1000 blocks", "layers [100000,1,1,1]")
    meta("scale_zero", cfg(scale=0), "scale in 1..=64", "scale 0")
    meta("scale_huge", cfg(scale=1 << 40), "scale in 1..=64", "scale 2^40")
    meta("planes_huge", cfg(planes=[1 << 30] * 4), "65536 planes", "planes 2^30")
    meta("planes_zero", cfg(planes=[0, 2, 4, 8]), "expected", "planes [0,2,4,8]")
    meta("classes_zero", cfg(num_classes=0), "classes", "0 classes")
    meta("classes_huge", cfg(num_classes=1 << 40), "classes", "2^40 classes")
    meta("stem_zero", cfg(stem={"kind": "conv7", "channels": 0}), "stem", "a stem with 0 channels")
    meta("cardinality_zero", cfg(cardinality=0), "cardinality", "cardinality 0")
    meta("cardinality_huge", cfg(cardinality=1 << 63), "cardinality",
         "cardinality 2^63: the chunk width overflows 64 bits")
    meta("base_width_huge", cfg(flavour="official", base_width=1 << 62, scale=2), "base width",
         "official with base width 2^62: the chunk width overflows 64 bits")
    meta("se_too_narrow", cfg(se=True), "SE", "SE on 4-channel stages")
    meta("mismatch", cfg(num_classes=5), "expected shape [5, 32], found [3, 32]",
         "a valid config that does not fit the tensors")
    meta("largest", cfg(layers=[1000] * 4, planes=[65536] * 4, scale=64, base_width=1024,
                        stem={"kind": "conv7", "channels": 65536}),
         "expected", "the largest config validate() accepts, with the tiny model's tensors")

    # Non-finite and overflowing weights.
    def poisoned(name, index, value):
        t = TINY[name]
        vals = list(struct.unpack("<%df" % numel(t.shape), t.data))
        vals[index] = value
        return T("F32", t.shape, f32(vals))

    w("nan_weight", build(tiny(layer2__0__conv1__weight=poisoned("layer2.0.conv1.weight", 1, float("nan")))),
      "layer2.0.conv1.weight|finite|NaN", "a NaN in layer2.0.conv1.weight")
    w("inf_weight", build(tiny(fc__weight=poisoned("fc.weight", 95, float("inf")))), "fc.weight|finite|inf",
      "+inf in fc.weight")
    w("neg_inf_bias", build(tiny(fc__bias=poisoned("fc.bias", 0, float("-inf")))), "fc.bias|finite|inf",
      "-inf in fc.bias")
    w("nan_running_var", build(tiny(bn1__running_var=poisoned("bn1.running_var", 0, float("nan")))),
      "bn1.running_var|finite", "a NaN BatchNorm variance")
    half = to_f16(TINY)
    nan16 = bytearray(half["layer1.0.conv1.weight"].data)
    nan16[0:2] = b"\x00\x7e"
    half["layer1.0.conv1.weight"] = T("F16", half["layer1.0.conv1.weight"].shape, bytes(nan16))
    w("nan_f16", build(half), "layer1.0.conv1.weight|finite", "an F16 checkpoint with an F16 NaN")
    bf = to_f16(TINY)
    bf["fc.bias"] = T("BF16", [3], b"\x80\x7f" * 3)
    w("inf_bf16", build(bf), "fc.bias|finite", "a BF16 tensor of +inf")
    w("negative_running_var", build(tiny(layer1__0__bn3__running_var=T("F32", [4], f32([1.0, -2.0, 1.0, 1.0])))),
      "layer1.0.bn3|finite", "a negative BatchNorm variance: folding takes a square root of it")
    w("fold_overflow", build(tiny(bn1__weight=T("F32", [1], f32([3e38])), bn1__running_var=T("F32", [1], f32([0.0])))),
      "bn1|finite", "gamma 3e38 over sqrt(0 + 1e-5): the folded weight overflows f32")

    # -- checkpoints whose preprocessing or labels metadata is broken (only `classify` reads them) ---
    def pp(name, settings, needles, description):
        text = settings if isinstance(settings, str) else json.dumps(settings)
        write("classify_weights/" + name + ".safetensors", build(TINY16, {"res2net.preprocess": text}), needles,
              description)

    def pps(**changes):
        c = {"input_size": [32, 32], "crop_pct": 0.875, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
        c.update(changes)
        return c

    pp("pp_invalid_json", '{"input_size": [32', "expected preprocessing settings in JSON", "cut-off JSON")
    pp("pp_missing_std", {"input_size": [32, 32], "crop_pct": 0.875, "mean": [0, 0, 0]},
       "expected preprocessing settings in JSON", "no std")
    pp("pp_size_zero", pps(input_size=[0, 32]), "sizes in 1..=8192", "input_size [0, 32]")
    pp("pp_size_huge", pps(input_size=[100000, 100000]), "sizes in 1..=8192", "input_size 100000")
    pp("pp_crop_zero", pps(crop_pct=0.0), "crop_pct in (0, 1]", "crop_pct 0")
    pp("pp_crop_above_one", pps(crop_pct=1.5), "crop_pct in (0, 1]", "crop_pct 1.5")
    pp("pp_std_zero", pps(std=[0.25, 0.0, 0.25]), "positive finite std", "a zero std: division by zero")
    pp("pp_mean_overflow", pps(mean=[1e39, 0, 0]), "finite mean", "a mean of 1e39, infinite as f32")
    pp("pp_interpolation", pps(interpolation="nea\nrest"), "bilinear|\\n",
       "interpolation 'nea\\nrest' (with a newline)")
    write("classify_weights/labels_wrong_count.safetensors",
          build(TINY16, {"res2net.labels": json.dumps(["a", "b"])}), "expected 3 names, found 2",
          "two labels for three classes")
    write("classify_weights/labels_not_strings.safetensors",
          build(TINY16, {"res2net.labels": json.dumps([1, 2, 3])}), "expected a JSON array of strings",
          "labels that are numbers")
    write("valid/pp_tiny_crop.safetensors", build(TINY16, {"res2net.preprocess": json.dumps(pps(crop_pct=1e-30))}),
          "OK", "crop_pct 1e-30: the resize before the crop is astronomically large; only the crop is computed")

    # -- broken input tensors ----------------------------------------------------------------------
    def i(name, data, needles, description):
        write("inputs/" + name + ".safetensors", data, needles, description)

    def tensor_file(name, dtype, shape, fill=b"\0"):
        return build({name: T(dtype, shape, fill * (numel(shape) * DTYPE_SIZE[dtype]))})

    i("wrong_name", tensor_file("image", "F32", [1, 3, 8, 8]), "tensor named 'input'", "tensor 'image'")
    i("name_with_newline", tensor_file("in\nput", "F32", [1, 3, 8, 8]), "without control characters",
      "a tensor name with a newline")
    i("no_tensors", raw_file(b"{}", b""), "tensor named 'input'", "no tensors at all")
    i("is_a_checkpoint", good, "tensor named 'input'", "the tiny checkpoint given as input")
    i("rank0", tensor_file("input", "F32", []), "rank 4", "a scalar")
    i("rank3", tensor_file("input", "F32", [3, 8, 8]), "rank 4", "[3, 8, 8] without batch")
    i("rank5", tensor_file("input", "F32", [1, 1, 3, 8, 8]), "rank 4", "[1, 1, 3, 8, 8]")
    i("channels_1", tensor_file("input", "F32", [1, 1, 8, 8]), "3 channels", "a grey image")
    i("channels_4", tensor_file("input", "F32", [1, 4, 8, 8]), "3 channels", "RGBA")
    i("nhwc", tensor_file("input", "F32", [1, 8, 8, 3]), "3 channels", "channels last")
    i("dtype_f16", tensor_file("input", "F16", [1, 3, 8, 8]), "dtype F32", "F16 input")
    i("dtype_f64", tensor_file("input", "F64", [1, 3, 8, 8]), "dtype F32", "F64 input")
    i("dtype_i64", tensor_file("input", "I64", [1, 3, 8, 8]), "dtype F32", "I64 input")
    i("dtype_u8", tensor_file("input", "U8", [1, 3, 8, 8]), "dtype F32", "U8 pixels")
    i("empty_batch", tensor_file("input", "F32", [0, 3, 8, 8]), "at least one image", "batch 0")
    i("zero_height", tensor_file("input", "F32", [1, 3, 0, 8]), "non-empty image", "height 0")
    i("zero_batch_huge_dims", tensor_file("input", "F32", [0, 3, 1 << 40, 1 << 40]), "at least one image",
      "batch 0 of 2^40 x 2^40 images: no bytes")
    i("huge_dims_lying",
      raw_file(header_json({"input": {"dtype": "F32", "shape": [1, 3, 100000, 100000],
                                      "data_offsets": [0, 4 * 3 * 16 * 16]}}), b"\0" * (4 * 3 * 16 * 16)),
      "expected", "declares [1, 3, 100000, 100000] (120 GB) over 3 KB of data")
    i("huge_dims_consistent",
      raw_file(header_json({"input": {"dtype": "F32", "shape": [1, 3, 100000, 100000],
                                      "data_offsets": [0, 4 * 3 * 100000 * 100000]}}), b"\0" * 64),
      "expected", "declares [1, 3, 100000, 100000] with matching offsets in a tiny file")
    i("too_wide", tensor_file("input", "F32", [1, 3, 1, 8193]), "height and width in 1..=8192",
      "a 1 x 8193 image, one pixel past the size limit")
    vals = [0.5] * (2 * 3 * 5 * 5)
    vals[75 + 2 * 25 + 3 * 5 + 4] = float("nan")
    i("nan", build(input_tensor(2, 5, 5, vals)), "finite|[1, 2, 3, 4]", "a NaN at [1, 2, 3, 4]")
    vals = [0.5] * (3 * 4 * 4)
    vals[0] = float("inf")
    i("inf", build(input_tensor(1, 4, 4, vals)), "finite|[0, 0, 0, 0]", "+inf at [0, 0, 0, 0]")
    vals[0], vals[47] = 0.5, float("-inf")
    i("neg_inf", build(input_tensor(1, 4, 4, vals)), "finite|[0, 2, 3, 3]", "-inf at [0, 2, 3, 3]")
    i("empty_file", b"", "empty file", "zero bytes")
    i("truncated", build(input_tensor(1, 8, 8))[:200], "expected", "cut after 200 bytes")
    i("text", b"1.0, 2.0, 3.0\n", "expected", "numbers as text")

    # -- hostile images (classify) -----------------------------------------------------------------
    def im(name, data, needles, description):
        write("images/" + name, data, needles, description)

    valid_png = gradient_png(20, 12)
    im("empty.png", b"", "empty file", "zero bytes")
    im("text.png", b"definitely an image, trust me\n", "no known image format", "text renamed .png")
    im("truncated.png", valid_png[: len(valid_png) // 2], "broken Png", "a PNG cut in half")
    im("truncated_header.png", valid_png[:20], "broken Png", "a PNG cut inside IHDR")
    im("bad_crc.png", png(4, 4, ihdr_crc=0xDEADBEEF), "broken Png", "IHDR with a wrong CRC")
    im("zero_width.png", png(0, 4, rows=b""), "broken Png", "IHDR width 0")
    im("no_idat.png", valid_png[:33] + png_chunk(b"IEND", b""), "broken Png", "no image data")
    im("bomb_100000.png", png(100000, 100000, rows=b"\x00" * 64), "pixels",
       "declares 100000 x 100000 RGB (30 GB) with 64 bytes of data")
    im("bomb_16384_1bit.png", png(16384, 16384, bit_depth=1, color=0), "pixels",
       "a complete 16384 x 16384 1-bit PNG of 33 KB: decodes to 268 M pixels (3 GB as f32)")
    im("bomb_65535x1_tall.png", png(1, 65535, rows=b"\x00\x00\x00\x00" * 65535), "broken Png",
       "1 x 65535: past the side limit")
    im("truncated.jpg", jpeg_header(16, 16)[:30], "broken Jpeg", "a JPEG cut inside its headers")
    im("no_scan.jpg", jpeg_header(16, 16) + b"\xff\xd9", "broken Jpeg", "a JPEG with headers and no scan data")
    im("bomb_65000.jpg", jpeg_header(65000, 65000) + b"\xff\xd9", "pixels",
       "a JPEG declaring 65000 x 65000 with no data")
    im("zero_size.jpg", jpeg_header(0, 16) + b"\xff\xd9", "broken Jpeg", "a JPEG declaring width 0")
    im("image.gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
                    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;", "Gif", "a 1x1 GIF")
    bmp_pixels = b"\x00\x00\xff\x00"
    bmp = (b"BM" + struct.pack("<IHHI", 14 + 40 + len(bmp_pixels), 0, 0, 54)
           + struct.pack("<IiiHHIIiiII", 40, 1, 1, 1, 24, 0, len(bmp_pixels), 2835, 2835, 0, 0) + bmp_pixels)
    im("image.bmp", bmp, "Bmp", "a 1x1 BMP")
    im("image.webp", b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00",
       "WebP", "a WebP header")
    im("png_named.jpg", valid_png[: len(valid_png) // 3], "broken Png", "a truncated PNG named .jpg")

    # -- the DLA layout --------------------------------------------------------------------------------
    dla = dla_model([1, 1, 1, 2, 1, 1], [2, 2, 4, 4, 8, 8], 64, 1, 2, 3)
    write("valid/tiny_dla.safetensors", build(dla), "OK",
          "DLA layout, levels [1,1,1,2,1,1], channels [2,2,4,4,8,8], base width 64, scale 2, 3 classes")
    grid = random.Random(20250102)
    write("valid/input_32.safetensors",
          build(input_tensor(1, 32, 32, [grid.uniform(-1, 1) for _ in range(3 * 32 * 32)])),
          "OK", "input [1,3,32,32]: sides a DLA halves evenly down to level 5")
    w("dla_missing_root", build({k: v for k, v in dla.items() if not k.startswith("level3.tree2.root.")}),
      "expected tensor 'level3.tree2.root.conv.weight' of shape [4, 16, 1, 1], found none",
      "the tiny DLA without the root of level3's second subtree")
    w("dla_project_shape", build(dict(dla, **{"level2.project.0.weight": conv_w(4, 3, 1)})),
      "tensor 'level2.project.0.weight': expected shape [4, 2, 1, 1], found [4, 3, 1, 1]",
      "the tiny DLA with a projection from 3 channels instead of 2")
    w("res2net_with_dla_root", build(dict(TINY, **{"level2.root.conv.weight": dla["level2.root.conv.weight"]})),
      "expected no tensor 'level2.root.conv.weight'",
      "the tiny seed Res2Net with one DLA root mixed in")
    w("res2net_with_dla_base", build(dict(TINY, **{k: v for k, v in dla.items() if k.startswith("base_layer.")})),
      "ResNet tensors ('layer1.0.conv1.weight') and DLA tensors ('base_layer.0.weight')",
      "the tiny seed Res2Net with a DLA base layer mixed in")

    with open(os.path.join(HERE, "MANIFEST.tsv"), "w") as f:
        f.write("# path\tphrases the error must contain ('|'-separated; OK = must succeed)\tdescription\n")
        f.write("# generated by make_corpus.py; do not edit\n")
        for rel, needles, description in MANIFEST:
            f.write("%s\t%s\t%s\n" % (rel, needles, description))
    total = sum(os.path.getsize(os.path.join(HERE, r)) for r, _, _ in MANIFEST)
    print("%d files, %d bytes" % (len(MANIFEST), total))


if __name__ == "__main__":
    main()
