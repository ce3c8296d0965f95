#!/usr/bin/env python3
"""Time the same Res2Net in res2net-wgpu, PyTorch (CPU) and ONNX Runtime (CPU, when installed).

    python tools/compare_pytorch.py --arch res2net50_26w_4s            # random weights
    python tools/compare_pytorch.py --weights model.safetensors        # a timm checkpoint

With ``--arch`` each side makes its own random weights for the named preset (timm's
``create_model(name)`` and ``res2net bench --arch name``): the cost of a forward pass does not depend
on the values.  With ``--weights`` both sides load the file; the timm architecture is the one that
loads it strictly (or ``--timm-arch``).

PyTorch runs eager in eval mode under ``torch.inference_mode()`` with ``torch.set_num_threads``;
ONNX Runtime runs the same model exported to ONNX in a temporary directory, with as many intra-op
threads.  Each takes a few warm-up runs, then the median of ``--iters``.  Ours is the median latency
``res2net bench --json`` reports for the same model, batch and size (it includes the upload of the
input and the readback of the results).  Prints one table: each runtime's median and ours / theirs.

Needs torch, timm and safetensors (onnxruntime and onnx optional), none of which the crate needs.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def median_ms(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def timm_model(args):
    import timm
    import torch

    if args.weights is None:
        return timm.create_model(args.arch, pretrained=False), args.arch
    from safetensors.torch import load_file

    state = {k: v.float() for k, v in load_file(str(args.weights)).items()}
    classes = state["fc.weight"].shape[0] if "fc.weight" in state else 1000
    names = [args.timm_arch] if args.timm_arch else sorted(
        set(timm.list_models("res2net*") + timm.list_models("res2next*"))
    )
    for name in names:
        try:
            model = timm.create_model(name, pretrained=False, num_classes=classes)
            model.load_state_dict(state, strict=True)
            return model, name
        except (RuntimeError, KeyError, ValueError) as e:
            if args.timm_arch:
                raise SystemExit(f"timm {name} does not load {args.weights}: {e}")
    return None, None


def time_torch(model, x, args):
    import torch

    with torch.inference_mode():
        return median_ms(lambda: model(x), args.iters, args.warmup)


def time_onnx(model, x, args):
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime not installed"
    import torch

    tmp = tempfile.mkdtemp(prefix="res2net-onnx-")
    try:
        path = os.path.join(tmp, "model.onnx")
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, (x,), path, opset_version=17, dynamo=False)
            except TypeError:  # older torch without the `dynamo` argument
                torch.onnx.export(model, (x,), path, opset_version=17)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        feed = {name: x.numpy()}
        ms = median_ms(lambda: sess.run(None, feed), args.iters, args.warmup)
        return ms, f"ONNX Runtime {ort.__version__} CPU"
    except Exception as e:  # export or session failures: report, do not abort the comparison
        return None, f"ONNX Runtime failed: {type(e).__name__}: {e}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def time_ours(args):
    binary = Path(args.binary)
    if not binary.exists():
        raise SystemExit(f"{binary} not found: build it with `cargo build --release` first")
    cmd = [str(binary), "bench", "--json", "--batch", str(args.batch), "--size", str(args.size),
           "--iters", str(args.iters)]
    cmd += ["--weights", str(args.weights)] if args.weights else ["--arch", args.arch]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", type=Path, help="a safetensors checkpoint (timm key names)")
    src.add_argument("--arch", help="a preset / timm model name, random weights")
    p.add_argument("--timm-arch", help="the timm model for --weights (default: the one that loads it)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="PyTorch and ONNX Runtime CPU threads")
    p.add_argument("--binary", default=str(ROOT / "target" / "release" / "res2net"))
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = p.parse_args()

    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model, timm_name = timm_model(args)
    x = torch.randn(args.batch, 3, args.size, args.size)

    rows = []  # (runtime, median ms or None, note)
    ours = time_ours(args)
    rows.append((f"res2net-wgpu on {ours['adapter']}", ours["latency_ms_median"], ""))
    if model is None:
        rows.append(("PyTorch", None, "no timm Res2Net loads this checkpoint (try --timm-arch)"))
    else:
        model.eval()
        rows.append((f"PyTorch {torch.__version__.split('+')[0]} eager CPU",
                     time_torch(model, x, args), ""))
        ms, label = time_onnx(model, x, args)
        rows.append((label, ms, "") if ms is not None else ("ONNX Runtime", None, label))

    mine = ours["latency_ms_median"]
    result = {
        "model": ours["model"],
        "timm_model": timm_name,
        "batch": args.batch,
        "size": args.size,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "runtimes": [
            {"runtime": r, "median_ms": ms, "ours_over_theirs": (mine / ms) if ms else None, "note": n}
            for r, ms, n in rows
        ],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"model {ours['model']} (timm {timm_name}), batch {args.batch}, {args.size}x{args.size}, "
          f"{args.threads} CPU threads for PyTorch/ONNX Runtime, median of {args.iters} runs")
    print(f"{'runtime':<58} {'median ms':>10} {'ours/theirs':>12}")
    for r, ms, note in rows:
        if ms is None:
            print(f"{r:<58} {'-':>10} {'-':>12}  ({note})")
        else:
            print(f"{r:<58} {ms:>10.1f} {mine / ms:>12.2f}")


if __name__ == "__main__":
    sys.exit(main())
