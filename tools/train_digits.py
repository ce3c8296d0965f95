#!/usr/bin/env python3
"""Train the bundled default model: a small seed-flavour SE-Res2Net on scikit-learn's digits.

What it makes (all under ``weights/``)
--------------------------------------
* ``digits_se_res2net.safetensors`` -- the trained model's ``state_dict()`` in f32 (including
  the int64 ``num_batches_tracked`` scalars, as PyTorch saves them).  ``__metadata__`` carries
  ``res2net.config``, ``res2net.labels``, ``res2net.preprocess``, ``res2net.dataset`` and
  ``res2net.heldout_accuracy`` (all JSON / plain strings).
* ``digits_heldout.safetensors`` -- the held-out split: ``pixels`` f32 [360,8,8] (raw
  0..16 values), ``labels`` f32 [360], ``torch_logits`` f32 [360,10] (``fc`` output, eval mode,
  computed in float64 and stored as f32) and ``torch_pred`` f32 [360].
* ``samples/digit_K.png`` (K = 0..9) -- the first held-out image of each class, 8-bit grayscale
  8x8, value = round(pixel / 16 * 255) (white digit on black, as in the data).
* ``README.md``.

Model
-----
The seed document's ``Res2Net`` (SEModule / Res2NetBottleneck / Res2Net), imported unchanged from
``tools/make_fixtures.py``: ``Res2Net(layers=[1,1,1,1], num_classes=10, width=4, scales=4,
groups=1, se=True)``, 32x32 input.  The model returns softmax probabilities; the logits used for
training and for the reference are the output of ``fc`` (captured by a forward hook).

Preprocessing (reproduced exactly by the Rust crate)
----------------------------------------------------
pixels (0..16) / 16 -> f32 [N,1,8,8] -> ``F.interpolate(size=(32,32), mode="bilinear",
align_corners=False)`` (no antialias) -> repeat to 3 channels -> (x - 0.5) / 0.5.
Training adds light augmentation (random +-2 px shift by zero padding + crop of the 32x32 image,
small random rotation / scale via affine_grid) before the normalisation; nothing at eval.

Split
-----
``train_test_split(arange(1797), test_size=0.2, random_state=0, stratify=y)``: 1437 train /
360 held-out.  Only the train part is used for training; the recipe is fixed (no selection on
the held-out split).

How to run
----------
    python tools/train_digits.py

from the repository root (torch, timm, safetensors, numpy, scikit-learn, pillow; CPU, 2 threads,
a few minutes).  Python is NOT needed to build or use the crate: the outputs are committed.
"""

import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import Res2Net, Res2NetBottleneck, SEModule, save, dumps  # noqa: E402,F401

torch.set_num_threads(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "weights")

# --- model / training configuration ----------------------------------------------------------
LAYERS = [1, 1, 1, 1]
NUM_CLASSES = 10
WIDTH = 4
SCALES = 4
GROUPS = 1
SE = True
SIZE = 32
MEAN = [0.5, 0.5, 0.5]
STD = [0.5, 0.5, 0.5]

EPOCHS = int(os.environ.get("DIGITS_EPOCHS", "60"))
BATCH = 64
LR = 3e-3
WEIGHT_DECAY = 0.02
WARMUP_EPOCHS = 2
LABEL_SMOOTHING = 0.05
SEED = 0


def build():
    return Res2Net(list(LAYERS), NUM_CLASSES, width=WIDTH, scales=SCALES, groups=GROUPS, se=SE)


def config_json():
    planes = [WIDTH * SCALES * 2 ** i for i in range(4)]
    return dumps({
        "flavour": "seed",
        "layers": list(LAYERS),
        "planes": planes,
        "stem": {"kind": "conv7", "channels": planes[0]},
        "base_width": WIDTH,
        "scale": SCALES,
        "cardinality": GROUPS,
        "avg_down": False,
        "se": SE,
        "num_classes": NUM_CLASSES,
    })


def preprocess_json():
    return dumps({
        "input_size": [SIZE, SIZE],
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": MEAN,
        "std": STD,
        "grayscale_max": 1.0,
    })


# --- data ------------------------------------------------------------------------------------

def upscale(pixels):
    """pixels: array [N,64] with values 0..16 -> f32 [N,1,32,32] in [0,1] (not normalised)."""
    x = torch.from_numpy(np.asarray(pixels, dtype=np.float32).reshape(-1, 1, 8, 8)) / 16.0
    return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def normalise(x1):
    """[N,1,H,W] in [0,1] -> [N,3,H,W] normalised with MEAN / STD."""
    x = x1.repeat(1, 3, 1, 1)
    mean = torch.tensor(MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess(pixels):
    """The eval path, exactly what the Rust crate reproduces."""
    return normalise(upscale(pixels)).contiguous()


def augment(x1, gen):
    """Light training augmentation on [N,1,32,32] in [0,1]: small rotation/scale, +-2 px shift."""
    n = x1.shape[0]
    ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10.0)
    scl = 1.0 + (torch.rand(n, generator=gen) * 2 - 1) * 0.08
    cos, sin = torch.cos(ang) / scl, torch.sin(ang) / scl
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    grid = F.affine_grid(theta, list(x1.shape), align_corners=False)
    x1 = F.grid_sample(x1, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # +-2 px shift: zero-pad by 2 and take a random 32x32 crop
    padded = F.pad(x1, (2, 2, 2, 2))
    dx = torch.randint(0, 5, (n,), generator=gen)
    dy = torch.randint(0, 5, (n,), generator=gen)
    out = torch.empty_like(x1)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + SIZE, dx[i]:dx[i] + SIZE]
    return out


# --- model helpers ---------------------------------------------------------------------------

def fc_logits(model, x):
    """Run the seed model (which returns softmax probs) and return the output of `fc`."""
    captured = {}
    hook = model.fc.register_forward_hook(lambda mod, inp, out: captured.__setitem__("logits", out))
    try:
        probs = model(x)
    finally:
        hook.remove()
    return captured["logits"], probs


def reference_logits(model, x):
    """float64 eval-mode logits (fc output)."""
    m64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        logits, probs = fc_logits(m64, x.double())
    assert torch.allclose(probs, F.softmax(logits, dim=1), rtol=0, atol=1e-12)
    return logits


def train(model, x_train1, y_train):
    gen = torch.Generator().manual_seed(SEED)
    n = x_train1.shape[0]
    steps_per_epoch = math.ceil(n / BATCH)
    total = EPOCHS * steps_per_epoch
    warm = WARMUP_EPOCHS * steps_per_epoch
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}], lr=LR)

    def lr_at(step):
        if step < warm:
            return LR * (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return LR * 0.5 * (1 + math.cos(math.pi * t))

    y_train = torch.as_tensor(y_train, dtype=torch.long)
    step = 0
    t0 = time.time()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot_loss, correct = 0.0, 0
        for b in range(steps_per_epoch):
            idx = perm[b * BATCH:(b + 1) * BATCH]
            xb = normalise(augment(x_train1[idx], gen))
            yb = y_train[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            logits, _ = fc_logits(model, xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=LABEL_SMOOTHING)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            tot_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        if epoch % 5 == 4 or epoch == EPOCHS - 1 or epoch == 0:
            print(f"epoch {epoch + 1:3d}/{EPOCHS}  loss {tot_loss / n:.4f}  train-acc(aug) "
                  f"{correct / n:.4f}  lr {lr_at(step - 1):.2e}  {time.time() - t0:6.1f}s", file=sys.stderr)
    model.eval()
    return time.time() - t0


def write_png(pixels8x8, path):
    v = np.floor(np.asarray(pixels8x8, dtype=np.float64) / 16.0 * 255.0 + 0.5).astype(np.uint8)
    Image.fromarray(v.reshape(8, 8), mode="L").save(path, optimize=False)
    os.chmod(path, 0o644)


def write_readme(info):
    lines = [
        "# Bundled default model: SE-Res2Net on scikit-learn digits",
        "",
        "A small **seed-flavour SE-Res2Net** (the seed document's `Res2Net` with SE modules) trained on",
        "scikit-learn's `load_digits` (1,797 grayscale 8x8 images of the digits 0-9, pixel values 0..16).",
        "It is the model `res2net demo` and `res2net classify` use when no checkpoint is given, so the",
        "crate works with no download.",
        "",
        "## Model",
        "",
        f"`Res2Net(layers=[1,1,1,1], num_classes=10, width={WIDTH}, scales={SCALES}, groups={GROUPS}, se=True)`",
        f"(planes {[WIDTH * SCALES * 2 ** i for i in range(4)]}, 7x7 stride-2 stem + 3x3 max-pool, one",
        "bottleneck per stage, SE reduction 16, input 3x32x32, softmax output; logits = output of `fc`).",
        f"{info['params']:,} parameters; the checkpoint is the `state_dict()` in f32, including the int64",
        "`num_batches_tracked` scalars PyTorch saves.",
        "",
        "## Data split",
        "",
        f"`sklearn.model_selection.train_test_split(arange(1797), test_size=0.2, random_state=0, stratify=y)`:",
        f"{info['n_train']} training images, {info['n_test']} held-out images. Only the training part was used",
        "for training; the recipe is fixed (no model selection on the held-out split).",
        "",
        "## Preprocessing",
        "",
        "1. `x = pixels / 16.0` (float32, range [0,1]), shape [N,1,8,8];",
        "2. `torch.nn.functional.interpolate(x, size=(32,32), mode='bilinear', align_corners=False)`",
        "   (no antialias);",
        "3. repeat the channel to 3 channels;",
        "4. normalise with mean [0.5,0.5,0.5], std [0.5,0.5,0.5], i.e. `(x - 0.5) / 0.5`.",
        "",
        "The same is recorded in the checkpoint's `res2net.preprocess` metadata",
        f"(`{preprocess_json()}`).",
        "A PNG input is read as grayscale value / 255 (white digit on black, like the data) and goes",
        "through steps 2-4.",
        "",
        "## Training",
        "",
        "    python tools/train_digits.py",
        "",
        f"(torch {torch.__version__.split('+')[0]}, CPU, 2 threads; {info['train_s']:.0f} s of training here, about",
        "1-2 s per epoch on an otherwise idle 2-core machine. CPU training is deterministic: a rerun",
        "reproduces the same weights bit for bit with the same torch build.)",
        f"AdamW (lr {LR}, weight decay {WEIGHT_DECAY} on conv/linear weights), {WARMUP_EPOCHS} warm-up epochs then",
        f"cosine decay, {EPOCHS} epochs, batch {BATCH}, cross-entropy with label smoothing {LABEL_SMOOTHING},",
        "BatchNorm in train mode during training and eval mode afterwards, seeds fixed (0).",
        "Augmentation (training only): random rotation within +-10 degrees and scale within +-8 %",
        "(`affine_grid` / `grid_sample`), then a random +-2 px shift (zero pad 2 + random 32x32 crop),",
        "applied to the upscaled [0,1] image before normalisation.",
        "",
        "## Held-out accuracy",
        "",
        f"**{info['acc']:.4f}** ({info['correct']}/{info['n_test']}) in PyTorch, eval mode (float64 forward).",
        "Misclassified held-out images: " + (", ".join(
            f"position {w['pos']} (dataset index {w['index']}, label {w['label']}, predicted {w['pred']})"
            for w in info["wrong"]) or "none") + ".",
        "",
        "## Files",
        "",
        "| file | contents |",
        "|---|---|",
        f"| `digits_se_res2net.safetensors` | the model (`state_dict()`, f32) with `__metadata__`: `res2net.config`, `res2net.labels`, `res2net.preprocess`, `res2net.dataset`, `res2net.heldout_accuracy` ({info['ckpt_bytes']:,} bytes) |",
        f"| `digits_heldout.safetensors` | the held-out split: `pixels` f32 [{info['n_test']},8,8] (raw 0..16 digit values), `labels` f32 [{info['n_test']}], `torch_logits` f32 [{info['n_test']},10] (fc output, eval mode, float64 then f32), `torch_pred` f32 [{info['n_test']}]; metadata `heldout_accuracy`, `description` ({info['io_bytes']:,} bytes) |",
        "| `samples/digit_K.png` | K = 0..9: the first held-out image of class K, 8-bit grayscale 8x8, value = round(pixel / 16 * 255) |",
        "",
        "| sample | held-out position | dataset index | label | PyTorch prediction |",
        "|---|---|---|---|---|",
    ]
    for s in info["samples"]:
        lines.append(f"| `samples/digit_{s['label']}.png` | {s['pos']} | {s['index']} | {s['label']} | {s['pred']} |")
    lines.append("")
    with open(os.path.join(OUT_DIR, "README.md"), "w") as f:
        f.write("\n".join(lines))
    os.chmod(os.path.join(OUT_DIR, "README.md"), 0o644)


def main():
    t_start = time.time()
    print(f"torch {torch.__version__}", file=sys.stderr)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    os.makedirs(os.path.join(OUT_DIR, "samples"), exist_ok=True)

    digits = load_digits()
    data = np.asarray(digits.data, dtype=np.float32)   # [1797, 64], 0..16
    y = np.asarray(digits.target, dtype=np.int64)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, random_state=0, stratify=y)
    n_train, n_test = len(train_idx), len(test_idx)
    print(f"train {n_train} / held-out {n_test}", file=sys.stderr)

    x_train1 = upscale(data[train_idx])
    x_test = preprocess(data[test_idx])
    y_test = y[test_idx]

    torch.manual_seed(SEED)
    model = build()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params {n_params}", file=sys.stderr)
    train_s = train(model, x_train1, y[train_idx])
    model.eval()

    # --- held-out reference (float64, eval mode) ---------------------------------------------
    logits64 = reference_logits(model, x_test)
    pred = logits64.argmax(1).numpy()
    correct = int((pred == y_test).sum())
    acc = correct / n_test
    with torch.no_grad():
        l32, _ = fc_logits(model, x_test)
    acc32 = float((l32.argmax(1).numpy() == y_test).mean())
    print(f"held-out accuracy {acc:.4f} ({correct}/{n_test}); f32 forward {acc32:.4f}", file=sys.stderr)
    acc_str = f"{acc:.4f}"
    dataset = (f"scikit-learn load_digits, 8x8 upscaled to {SIZE}x{SIZE}, train {n_train} / held-out {n_test} "
               f"(train_test_split test_size=0.2 random_state=0 stratified)")

    # --- checkpoint ----------------------------------------------------------------------------
    meta = {
        "res2net.config": config_json(),
        "res2net.labels": dumps([str(k) for k in range(NUM_CLASSES)]),
        "res2net.preprocess": preprocess_json(),
        "res2net.dataset": dataset,
        "res2net.heldout_accuracy": acc_str,
    }
    sd = {}
    for k, v in model.state_dict().items():
        v = v.detach()
        if v.is_floating_point():
            v = v.float()
        sd[k] = v.contiguous()
    ckpt_path = os.path.join(OUT_DIR, "digits_se_res2net.safetensors")
    save(sd, ckpt_path, meta)

    # --- held-out file -------------------------------------------------------------------------
    io_meta = {
        "heldout_accuracy": acc_str,
        "description": (f"{dataset}; pixels = raw held-out 8x8 digits (0..16; the model's input is pixels/16, bilinear "
                        f"align_corners=False to {SIZE}x{SIZE}, 3 channels, (x-0.5)/0.5), labels = true class, "
                        "torch_logits = fc output of digits_se_res2net in eval mode (float64, stored f32), "
                        "torch_pred = argmax of torch_logits"),
    }
    io_path = os.path.join(OUT_DIR, "digits_heldout.safetensors")
    save({
        "pixels": torch.from_numpy(data[test_idx].reshape(-1, 8, 8).copy()).contiguous(),
        "labels": torch.as_tensor(y_test, dtype=torch.float32).contiguous(),
        "torch_logits": logits64.float().contiguous(),
        "torch_pred": torch.as_tensor(pred, dtype=torch.float32).contiguous(),
    }, io_path, io_meta)

    # --- sample PNGs ---------------------------------------------------------------------------
    samples = []
    for k in range(NUM_CLASSES):
        pos = int(np.nonzero(y_test == k)[0][0])
        index = int(test_idx[pos])
        path = os.path.join(OUT_DIR, "samples", f"digit_{k}.png")
        write_png(data[index], path)
        # the PNG (value/255) as input: must give the same prediction
        png = np.asarray(Image.open(path), dtype=np.float32)
        assert png.shape == (8, 8)
        xin = normalise(F.interpolate(torch.from_numpy(png / 255.0).view(1, 1, 8, 8), size=(SIZE, SIZE),
                                      mode="bilinear", align_corners=False))
        png_logits = reference_logits(model, xin)[0]
        png_pred = int(png_logits.argmax())
        samples.append(dict(label=k, pos=pos, index=index, pred=int(pred[pos]), png_pred=png_pred,
                            png_dlogit=float((png_logits - logits64[pos]).abs().max())))

    # --- verification: fresh model + saved checkpoint reproduces the stored logits -------------
    torch.manual_seed(12345)
    fresh = build()
    loaded = load_file(ckpt_path)
    for k, v in loaded.items():
        want = torch.int64 if k.endswith("num_batches_tracked") else torch.float32
        assert v.dtype == want, (k, v.dtype)
        if k.endswith("num_batches_tracked"):
            assert v.shape == torch.Size([]), (k, v.shape)
    assert set(loaded) == set(model.state_dict())
    fresh.load_state_dict(loaded, strict=True)
    fresh.eval()
    with safe_open(ckpt_path, "pt") as f:
        assert f.metadata() == meta
    io = load_file(io_path)
    with safe_open(io_path, "pt") as f:
        assert f.metadata() == io_meta
    assert io["pixels"].shape == (n_test, 8, 8) and io["pixels"].dtype == torch.float32
    io["input"] = preprocess(io["pixels"].reshape(-1, 64).numpy())
    assert torch.equal(io["input"], x_test)
    assert io["torch_logits"].shape == (n_test, NUM_CLASSES)
    re64 = reference_logits(fresh, io["input"])
    d64 = (re64 - io["torch_logits"].double()).abs().max().item()
    with torch.no_grad():
        re32, _ = fc_logits(fresh, io["input"])
    d32 = (re32.double() - io["torch_logits"].double()).abs().max().item()
    print(f"reload check: max |logit diff| float64 {d64:.2e}, float32 {d32:.2e}", file=sys.stderr)
    assert d64 < 1e-5, d64
    assert d32 < 1e-4, d32
    assert torch.equal(io["torch_pred"], re64.argmax(1).float())
    assert torch.equal(io["labels"], torch.as_tensor(y_test, dtype=torch.float32))

    wrong = [dict(pos=int(p), index=int(test_idx[p]), label=int(y_test[p]), pred=int(pred[p]))
             for p in np.nonzero(pred != y_test)[0]]
    for w in wrong:
        print(f"misclassified: held-out pos {w['pos']}, dataset index {w['index']}, label {w['label']}, "
              f"pred {w['pred']}", file=sys.stderr)
    ckpt_bytes, io_bytes = os.path.getsize(ckpt_path), os.path.getsize(io_path)
    assert ckpt_bytes < 3e6
    info = dict(params=n_params, n_train=n_train, n_test=n_test, train_s=train_s, acc=acc, correct=correct,
                ckpt_bytes=ckpt_bytes, io_bytes=io_bytes, samples=samples, wrong=wrong)
    write_readme(info)

    print(f"checkpoint {ckpt_bytes} B, held-out file {io_bytes} B", file=sys.stderr)
    for s in samples:
        print(f"digit_{s['label']}.png: held-out pos {s['pos']}, dataset index {s['index']}, "
              f"pred {s['pred']} (from PNG: {s['png_pred']}, max |dlogit| {s['png_dlogit']:.2e})", file=sys.stderr)
    print(json.dumps(meta, indent=1), file=sys.stderr)
    print(f"total wall time {time.time() - t_start:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
