"""Res2Net image classifiers on any GPU (wgpu compute shaders), from PyTorch/timm checkpoints saved
as safetensors, with the same runtime as the Rust crate and the ``res2net`` command.

    import numpy as np, res2net_wgpu as r2n

    m = r2n.Model("model.safetensors", device="auto", precision="f32", arch=None)
    m.arch, m.num_classes, m.device
    out = m.infer(x)                   # x: float32 [N, 3, H, W] -> {"logits": ..., "probs": ...}
    m.classify(["cat.jpg"], top=5)     # per image: [(label, prob), ...]
    m.features(x, out_indices=[1, 4])  # backbone: {index: float32 [N, C, H', W']}
    m.points[1].name                   # "layer1": each point's name, channels and reduction
    r2n.Model.bundled()                # the bundled digits model

Bad input (a broken checkpoint, an array of the wrong shape, an unreadable image) raises
``ValueError``; other failures raise ``RuntimeError``. Work on the GPU releases the GIL.
"""

from ._native import FeaturePoint, Model, __version__

__all__ = ["FeaturePoint", "Model", "__version__"]
