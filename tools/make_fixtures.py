#!/usr/bin/env python3
"""Generate the PyTorch reference fixtures in tests/fixtures/.

What it makes
-------------
For every fixture NAME (see FIXTURES below) two files are written:

* ``tests/fixtures/NAME.safetensors`` -- the model's ``state_dict()`` exactly as
  PyTorch has it (including the int64 ``num_batches_tracked`` scalars, which a
  loader must skip).  Float tensors are f32, except ``timm_res2net_s8_f16``
  (f16) and ``timm_res2net_bf16`` (bf16).  ``timm_meta_config`` additionally
  carries a ``res2net.config`` JSON string in the file's ``__metadata__``.
* ``tests/fixtures/NAME.io.safetensors`` -- ``input`` f32 [N,3,H,W], ``logits``
  f32 [N,classes] and ``probs`` f32 [N,classes] (softmax of the logits).  The
  reference is computed in float64 (model and input converted to double, eval()
  mode, torch.no_grad()) and then stored as f32.  ``__metadata__`` holds
  ``fixture``, ``flavour`` ("seed" | "official"), ``description`` (one line) and
  ``config`` (a JSON description of the architecture, informational).
* ``tests/fixtures/NAME.features.safetensors`` (for the fixtures that list
  feature sets) -- the backbone outputs of timm's ``features_only`` mode:
  ``input`` f32 [N,3,H,W] and one f32 [N,C,H,W] tensor per feature point,
  named by its module (``act1``, ``layer1``..``layer4``; ``level0``..``level5``
  for DLA), computed in float64 by ``timm.models._features.FeatureListNet``
  (what ``timm.create_model(..., features_only=True, out_indices=...)``
  builds) once per ``out_indices`` set of the fixture.  Every set returns the
  same values for the points it shares with the others, so each point is stored
  once; ``__metadata__["out_indices"]`` lists the sets (JSON) for the tests to
  build.  The seed flavour has no timm model: its points (``act1`` = the ReLU
  after ``bn1``, then ``layer1``..``layer4``) are taken from the seed module.

Two flavours are covered:

* "seed": the ``SEModule`` / ``Res2NetBottleneck`` / ``Res2Net`` classes of the
  seed document (shared/seed/000_0d9da373df7ecc09.txt), reconstructed verbatim
  below (only the indentation, which the text lost, was restored).  logits =
  output of ``fc`` (captured by a forward hook), probs = the model's returned
  softmax.
* "official": ``timm.models.resnet.ResNet`` with ``timm.models.res2net.Bottle2neck``
  blocks (the layout of every published Res2Net checkpoint).  logits = model
  output, probs = softmax(logits, dim=1).  The ``timm_dla*`` fixtures are
  ``timm.models.dla.DLA`` with ``DlaBottle2neck`` blocks, the layout of timm's
  ``dla60_res2net`` / ``dla60_res2next`` (levels 1,1,1,2,3,1) at narrower
  channels so the files stay small; their ``fc`` is a 1x1 conv.

Before the reference is computed every BatchNorm gets random affine parameters
and running statistics, and every conv / linear gets a random scaled
Kaiming-normal (fan_in) weight and N(0, 0.1) bias, so that no branch is zero
(the seed zero-inits bn3 and timm zero-inits bn3 too) and activations stay O(1).

Each written checkpoint is then loaded into a freshly built model and must
reproduce the stored logits (float64 forward) to 1e-6 relative.

How to run
----------
    python tools/make_fixtures.py

from the repository root, with torch, timm (1.0.x) and safetensors installed
(CPU only; takes well under a minute).  Python and these packages are NOT
needed to build or test the crate: the generated files are committed.
"""

import copy
import json
import math
import os
import sys

import torch
from torch import nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import timm
from timm.models.resnet import ResNet
from timm.models.res2net import Bottle2neck
from timm.models.dla import DLA, DlaBottle2neck
from timm.models._features import FeatureListNet
from timm.layers import SEModule as TimmSEModule

torch.set_num_threads(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures")


# ---------------------------------------------------------------------------
# Seed flavour: the seed document's code, verbatim (indentation restored).
# ---------------------------------------------------------------------------

# 需要分类的类别数
classes = 5


# SE模块
class SEModule(nn.Module):
    def __init__(self, channels, reduction=16):
        super(SEModule, self).__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0)
        self.sigmoid = nn.Sigmoid()

    def forward(self, input):
        x = self.avg_pool(input)
        x = self.fc1(x)
        x = self.relu(x)
        x = self.fc2(x)
        x = self.sigmoid(x)
        return input * x


class Res2NetBottleneck(nn.Module):
    expansion = 4  # 残差块的输出通道数=输入通道数*expansion

    def __init__(self, inplanes, planes, downsample=None, stride=1, scales=4, groups=1, se=True, norm_layer=True):
        # scales为残差块中使用分层的特征组数,groups表示其中3*3卷积层数量,SE模块和BN层
        super(Res2NetBottleneck, self).__init__()
        if planes % scales != 0:  # 输出通道数为4的倍数
            raise ValueError('Planes must be divisible by scales')
        if norm_layer:  # BN层
            norm_layer = nn.BatchNorm2d
        bottleneck_planes = groups * planes
        self.scales = scales
        self.stride = stride
        self.downsample = downsample
        # 1*1的卷积层,在第二个layer时缩小图片尺寸
        self.conv1 = nn.Conv2d(inplanes, bottleneck_planes, kernel_size=1, stride=stride)
        self.bn1 = norm_layer(bottleneck_planes)
        # 3*3的卷积层,一共有3个卷积层和3个BN层
        self.conv2 = nn.ModuleList([nn.Conv2d(bottleneck_planes // scales, bottleneck_planes // scales,
                                              kernel_size=3, stride=1, padding=1, groups=groups) for _ in range(scales - 1)])
        self.bn2 = nn.ModuleList([norm_layer(bottleneck_planes // scales) for _ in range(scales - 1)])
        # 1*1的卷积层,经过这个卷积层之后输出的通道数变成
        self.conv3 = nn.Conv2d(bottleneck_planes, planes * self.expansion, kernel_size=1, stride=1)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        # SE模块
        self.se = SEModule(planes * self.expansion) if se else None

    def forward(self, x):
        identity = x
        # 1*1的卷积层
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        # scales个(3x3)的残差分层架构
        xs = torch.chunk(out, self.scales, 1)  # 将x分割成scales块
        ys = []
        for s in range(self.scales):
            if s == 0:
                ys.append(xs[s])
            elif s == 1:
                ys.append(self.relu(self.bn2[s - 1](self.conv2[s - 1](xs[s]))))
            else:
                ys.append(self.relu(self.bn2[s - 1](self.conv2[s - 1](xs[s] + ys[-1]))))
        out = torch.cat(ys, 1)
        # 1*1的卷积层
        out = self.conv3(out)
        out = self.bn3(out)
        # 加入SE模块
        if self.se is not None:
            out = self.se(out)
        # 下采样
        if self.downsample:
            identity = self.downsample(identity)
        out += identity
        out = self.relu(out)
        return out


class Res2Net(nn.Module):
    def __init__(self, layers, num_classes, width=16, scales=4, groups=1,
                 zero_init_residual=True, se=True, norm_layer=True):
        super(Res2Net, self).__init__()
        if norm_layer:  # BN层
            norm_layer = nn.BatchNorm2d
        # 通道数分别为64,128,256,512
        planes = [int(width * scales * 2 ** i) for i in range(4)]
        self.inplanes = planes[0]
        # 7*7的卷积层,3*3的最大池化层
        self.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3,
                               bias=False)
        self.bn1 = norm_layer(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # 四个残差块
        self.layer1 = self._make_layer(Res2NetBottleneck, planes[0], layers[0], stride=1, scales=scales, groups=groups, se=se, norm_layer=norm_layer)
        self.layer2 = self._make_layer(Res2NetBottleneck, planes[1], layers[1], stride=2, scales=scales, groups=groups, se=se, norm_layer=norm_layer)
        self.layer3 = self._make_layer(Res2NetBottleneck, planes[2], layers[2], stride=2, scales=scales, groups=groups, se=se, norm_layer=norm_layer)
        self.layer4 = self._make_layer(Res2NetBottleneck, planes[3], layers[3], stride=2, scales=scales, groups=groups, se=se, norm_layer=norm_layer)
        # 自适应平均池化,全连接层
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3] * Res2NetBottleneck.expansion, num_classes)
        # 初始化
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        # 零初始化每个剩余分支中的最后一个BN,以便剩余分支从零开始,并且每个剩余块的行为类似于一个恒等式
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Res2NetBottleneck):
                    nn.init.constant_(m.bn3.weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1, scales=4, groups=1, se=True, norm_layer=True):
        if norm_layer:
            norm_layer = nn.BatchNorm2d
        downsample = None  # 下采样,可缩小图片尺寸
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride),
                norm_layer(planes * block.expansion),
            )
        layers = []
        layers.append(block(self.inplanes, planes, downsample, stride=stride, scales=scales, groups=groups, se=se, norm_layer=norm_layer))
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, scales=scales, groups=groups, se=se, norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        logits = self.fc(x)
        probas = nn.functional.softmax(logits, dim=1)
        return probas


# ---------------------------------------------------------------------------
# Fixture definitions
# ---------------------------------------------------------------------------

def dumps(obj):
    """Compact JSON, insertion-ordered keys."""
    return json.dumps(obj, separators=(",", ":"))


def seed_fixture(name, seed, layers, num_classes, width, scales, groups, se, input_shape, description,
                 features=None):
    config = dict(flavour="seed", layers=list(layers), width=width, scales=scales, groups=groups,
                  se=se, num_classes=num_classes)

    def build():
        return Res2Net(list(layers), num_classes, width=width, scales=scales, groups=groups, se=se)

    return dict(name=name, flavour="seed", seed=seed, build=build, input_shape=input_shape,
                description=description, config=config, ckpt_dtype=torch.float32, ckpt_meta=None,
                features=features)


def features(input_shape, *out_indices):
    """A features file: the input shape and the timm ``out_indices`` sets to check."""
    return dict(input_shape=input_shape, out_indices=[list(s) for s in out_indices])


def official_config(layers, channels, stem_type, stem_width, base_width, scale, cardinality,
                    avg_down, se, num_classes):
    """The `res2net.config` schema read by the Rust loader."""
    if "deep" in stem_type:
        stem = {"kind": "deep", "mid": stem_width, "channels": stem_width * 2}
    else:
        stem = {"kind": "conv7", "channels": 64}
    return {
        "flavour": "official",
        "layers": list(layers),
        "planes": list(channels),
        "stem": stem,
        "base_width": base_width,
        "scale": scale,
        "cardinality": cardinality,
        "avg_down": avg_down,
        "se": se,
        "num_classes": num_classes,
    }


def timm_fixture(name, seed, layers, num_classes, input_shape, description, channels=(16, 32, 64, 128),
                 base_width=26, scale=4, cardinality=1, stem_type="", stem_width=64, avg_down=False,
                 se=False, ckpt_dtype=torch.float32, config_in_ckpt=False, features=None):
    config = official_config(layers, channels, stem_type, stem_width, base_width, scale, cardinality,
                             avg_down, se, num_classes)

    def build():
        block_args = dict(scale=scale)
        if se:
            block_args["attn_layer"] = TimmSEModule
        return ResNet(block=Bottle2neck, layers=list(layers), channels=tuple(channels),
                      base_width=base_width, cardinality=cardinality, stem_type=stem_type,
                      stem_width=stem_width, avg_down=avg_down, num_classes=num_classes,
                      block_args=block_args)

    # widths must be >= 2 and divisible by the cardinality (grouped 3x3 convs)
    for planes in channels:
        width = int(math.floor(planes * (base_width / 64.0))) * cardinality
        assert width >= 2 and width % cardinality == 0, (name, planes, width)

    ckpt_meta = {"res2net.config": dumps(config)} if config_in_ckpt else None
    return dict(name=name, flavour="official", seed=seed, build=build, input_shape=input_shape,
                description=description, config=config, ckpt_dtype=ckpt_dtype, ckpt_meta=ckpt_meta,
                features=features)


DLA60_LEVELS = (1, 1, 1, 2, 3, 1)


def dla_fixture(name, seed, channels, cardinality, base_width, num_classes, input_shape, description,
                features=None, ckpt_dtype=torch.float32):
    """timm's DLA with DlaBottle2neck blocks (scale 4), as dla60_res2net / dla60_res2next build it."""
    config = {
        "flavour": "official",
        "levels": list(DLA60_LEVELS),
        "channels": list(channels),
        "base_width": base_width,
        "scale": 4,
        "cardinality": cardinality,
        "se": False,
        "num_classes": num_classes,
    }

    def build():
        return DLA(levels=DLA60_LEVELS, channels=tuple(channels), block=DlaBottle2neck,
                   cardinality=cardinality, base_width=base_width, num_classes=num_classes)

    # timm's DlaBottle2neck width: floor(out * base_width / 64) * cardinality // 2, grouped by cardinality
    for out in channels[2:]:
        width = int(math.floor(out * (base_width / 64.0))) * cardinality // 2
        assert width >= 1 and width % cardinality == 0, (name, out, width)
    return dict(name=name, flavour="official", seed=seed, build=build, input_shape=input_shape,
                description=description, config=config, ckpt_dtype=ckpt_dtype, ckpt_meta=None,
                features=features)


# Channel plans. (16,32,64,128) gives the 7x7 stem's 64 channels == 16*4, so layer1.0 has no
# downsample and is a *normal* block (timm: is_first = stride > 1 or downsample is not None).
# NARROW (8,16,32,64) keeps the files small (total < 15 MB) and, like the published models,
# gives layer1.0 a downsample, i.e. a stride-1 stage block (3x3 AvgPool at stride 1).
NARROW = (8, 16, 32, 64)

DLA_RES2NET_NOTE = (
    "timm DLA with DlaBottle2neck like dla60_res2net (levels 1,1,1,2,3,1, cardinality 1, base_width 28, "
    "scale 4) at channels 4,8,16,32,64,128 (widths 3,7,14,28): trees of depth 1-3, roots over "
    "concatenations with the pooled input on levels 3-5, max-pooled projected shortcuts, 1x1-conv "
    "classifier; batch 3, non-square")
DLA_RES2NEXT_NOTE = (
    "timm DLA with DlaBottle2neck like dla60_res2next (cardinality 8, base_width 4, scale 4) at channels "
    "4,8,32,32,64,64 (widths 8,8,16,16): grouped 3x3 convs, levels 3 and 5 keep their channels (no "
    "project), 63 rows (odd: 63 -> 32 at level1), bfloat16 checkpoint (values exactly representable)")

FIXTURES = [
    # ---- seed flavour -------------------------------------------------------
    seed_fixture(
        "seed_se_s4", 1001, [2, 1, 1, 1], 5, width=4, scales=4, groups=1, se=True,
        input_shape=(2, 3, 32, 32),
        description="seed block with SE (C//16, biased convs), scales 4, two blocks in layer1 "
                    "(identity-shortcut block), biased conv1/3x3/conv3/downsample, softmax head",
        features=features((2, 3, 36, 29), (0, 1, 2, 3, 4), (3,))),
    seed_fixture(
        "seed_nose_s4", 1002, [1, 2, 1, 1], 7, width=4, scales=4, groups=1, se=False,
        input_shape=(1, 3, 33, 47),
        description="seed block without SE, scales 4, two blocks in layer2, odd non-square input "
                    "(stride on the biased 1x1 conv1)"),
    seed_fixture(
        "seed_groups2_s8", 1003, [1, 1, 2, 1], 5, width=2, scales=8, groups=2, se=True,
        input_shape=(3, 3, 35, 29),
        description="seed block with groups=2 (bottleneck = groups*planes, grouped 3x3 convs), "
                    "scales 8, SE, two blocks in layer3, batch 3, odd non-square input"),
    # ---- official (timm) flavour -------------------------------------------
    timm_fixture(
        "timm_res2net_s4", 2001, [2, 2, 1, 1], 10, input_shape=(2, 3, 33, 47),
        description="timm Res2Net 7x7 stem, conv downsample, scale 4, base_width 26 "
                    "(widths 6,13,26,52), normal blocks with hierarchical adds in layer1/layer2, "
                    "layer1.0 has no downsample (64 == 16*4) so it is a normal block",
        features=features((1, 3, 45, 38), (0, 1, 2, 3, 4), (1, 3), (4,))),
    timm_fixture(
        "timm_res2net50d_style", 2002, [2, 1, 2, 1], 10, input_shape=(1, 3, 37, 41),
        channels=NARROW, stem_type="deep", stem_width=8, avg_down=True,
        description="timm res2net50d-style: deep 3x3 stem (8,8,16), avg-down downsample "
                    "(AvgPool2d(2, ceil_mode, count_include_pad=False) -> conv -> BN; identity pool "
                    "in layer1.0, a stride-1 stage block), base_width 26 (widths 3,6,13,26), odd input",
        features=features((2, 3, 37, 52), (1, 2, 3, 4), (0,), (2, 4))),
    timm_fixture(
        "timm_res2next", 2003, [2, 2, 1, 1], 6, input_shape=(2, 3, 32, 32),
        base_width=4, cardinality=4,
        description="timm Res2NeXt: cardinality 4 grouped 3x3 convs, base_width 4 "
                    "(widths 4,8,16,32; layer1 3x3 convs are depthwise), scale 4, layer1.0 normal block",
        features=features((1, 3, 40, 33), (2,), (0, 4))),
    timm_fixture(
        "timm_se_s4", 2004, [2, 1, 1, 1], 8, input_shape=(1, 3, 40, 36),
        channels=NARROW, se=True,
        description="timm Res2Net with SEModule after bn3 (rd = make_divisible(C/16, 8) = "
                    "8,8,8,16 for C = 32,64,128,256), scale 4, base_width 26 (widths 3,6,13,26)"),
    timm_fixture(
        "timm_res2net_s2", 2005, [2, 2, 1, 1], 10, input_shape=(3, 3, 32, 32),
        channels=NARROW, base_width=48, scale=2,
        description="timm Res2Net scale 2 (one 3x3 conv per block), base_width 48 "
                    "(widths 6,12,24,48), batch 3"),
    timm_fixture(
        "timm_res2net_s8_f16", 2006, [1, 2, 1, 1], 10, input_shape=(1, 3, 32, 32),
        channels=NARROW, base_width=28, scale=8, ckpt_dtype=torch.float16,
        description="timm Res2Net scale 8, base_width 28 (widths 3,7,14,28), float16 checkpoint "
                    "(values exactly representable, reference computed from them)"),
    timm_fixture(
        "timm_res2net_bf16", 2007, [1, 1, 1, 1], 10, input_shape=(2, 3, 33, 47),
        channels=NARROW, ckpt_dtype=torch.bfloat16,
        description="timm Res2Net scale 4, base_width 26 (widths 3,6,13,26), layers 1,1,1,1, "
                    "bfloat16 checkpoint (values exactly representable)"),
    timm_fixture(
        "timm_meta_config", 2008, [1, 2, 1, 1], 10, input_shape=(2, 3, 33, 47),
        config_in_ckpt=True,
        description="timm Res2Net like timm_res2net_s4 with layers 1,2,1,1; checkpoint "
                    "__metadata__ carries the res2net.config JSON"),
    # ---- DLA (timm dla60_res2net / dla60_res2next layout, narrow channels) ------------------
    dla_fixture("timm_dla60_res2net_narrow", 3001, (4, 8, 16, 32, 64, 128), 1, 28, 7, (3, 3, 32, 64),
                DLA_RES2NET_NOTE, features((2, 3, 32, 96), (1, 2, 3, 4, 5), (0, 1), (5,), (2, 4))),
    dla_fixture("timm_dla60_res2next_narrow", 3002, (4, 8, 32, 32, 64, 64), 8, 4, 5, (2, 3, 63, 32),
                DLA_RES2NEXT_NOTE, features((2, 3, 32, 95), (1, 2, 3, 4, 5), (0, 3)), torch.bfloat16),
]


# ---------------------------------------------------------------------------
# Randomisation, reference and checks
# ---------------------------------------------------------------------------

def randomise(model, gen):
    """Overwrite every parameter / BN buffer with O(1)-preserving random values."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                fan_in = w[0].numel()  # in_channels/groups * kh * kw
                gain = math.sqrt(2.0) if isinstance(m, nn.Conv2d) else 1.0
                factor = 0.5 + 0.5 * torch.rand((), generator=gen).item()  # U(0.5, 1)
                std = factor * gain / math.sqrt(fan_in)
                w.normal_(0.0, std, generator=gen)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1, generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0.0, 0.1, generator=gen)
                m.running_mean.normal_(0.0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)


def round_to(model, dtype):
    """Round every float parameter and buffer to `dtype` and back (kept as f32)."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.data = t.data.to(dtype).float()


def reference(model, x, flavour):
    """float64 eval-mode forward; returns (logits, probs) as float64."""
    m64 = copy.deepcopy(model).double().eval()
    captured = {}
    hook = None
    if flavour == "seed":
        hook = m64.fc.register_forward_hook(lambda mod, inp, out: captured.__setitem__("logits", out.clone()))
    with torch.no_grad():
        out = m64(x.double())
    if hook is not None:
        hook.remove()
    if flavour == "seed":
        logits, probs = captured["logits"], out
    else:
        logits, probs = out, F.softmax(out, dim=1)
    assert torch.allclose(probs, F.softmax(logits, dim=1), rtol=0, atol=1e-12)
    return logits, probs


def check_logits(name, logits):
    std = logits.std().item()
    amax = logits.abs().max().item()
    assert std > 0.05, f"{name}: logits std {std} too small"
    assert amax < 1e3, f"{name}: max |logit| {amax} too large"
    n = logits.shape[0]
    for i in range(n):
        assert logits[i].std().item() > 0.05, f"{name}: logits of item {i} nearly constant"
        for j in range(i + 1, n):
            d = (logits[i] - logits[j]).abs().max().item()
            assert d > 1e-2, f"{name}: items {i} and {j} give (nearly) equal logits ({d})"
    return std, amax


def save(tensors, path, metadata):
    """safetensors.torch.save_file, then make the header byte-deterministic.

    The safetensors writer keeps `__metadata__` in a hash map, so its key order
    changes from run to run; rewrite the header with the metadata keys sorted
    (same JSON, same length, tensor data untouched).
    """
    save_file(tensors, path, metadata=metadata)
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        raw = f.read(n)
        text = raw.decode("utf-8")
        stripped = text.rstrip(" ")
        header = json.loads(stripped, object_pairs_hook=lambda kv: dict(kv))
        if "__metadata__" in header:
            header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        new = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
        assert len(new.encode("utf-8")) == len(stripped.encode("utf-8")), path
        new = new + " " * (len(text) - len(stripped))
        f.seek(8)
        f.write(new.encode("utf-8"))
    os.chmod(path, 0o644)


def max_rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def make(fx):
    name = fx["name"]
    torch.manual_seed(fx["seed"])
    gen = torch.Generator().manual_seed(fx["seed"])
    model = fx["build"]()
    randomise(model, gen)
    if fx["ckpt_dtype"] != torch.float32:
        round_to(model, fx["ckpt_dtype"])
    model.eval()

    x = torch.randn(fx["input_shape"], generator=gen, dtype=torch.float32)
    logits, probs = reference(model, x, fx["flavour"])
    std, amax = check_logits(name, logits)

    # --- checkpoint -----------------------------------------------------------
    sd = {}
    for k, v in model.state_dict().items():
        v = v.detach()
        if v.is_floating_point():
            v = v.to(fx["ckpt_dtype"])
        sd[k] = v.contiguous()
    ckpt_path = os.path.join(OUT_DIR, f"{name}.safetensors")
    save(sd, ckpt_path, fx["ckpt_meta"])

    # --- inputs / outputs -------------------------------------------------------
    io_path = os.path.join(OUT_DIR, f"{name}.io.safetensors")
    io_meta = {
        "fixture": name,
        "flavour": fx["flavour"],
        "description": fx["description"],
        "config": dumps(fx["config"]),
    }
    save({"input": x.contiguous(), "logits": logits.float().contiguous(),
          "probs": probs.float().contiguous()}, io_path, io_meta)

    # --- self-consistency: fresh model + saved checkpoint reproduces the logits --
    io = load_file(io_path)
    with safe_open(io_path, "pt") as f:
        assert f.metadata() == io_meta
    assert io["input"].dtype == torch.float32 and io["input"].shape == x.shape
    assert torch.equal(io["input"], x)
    torch.manual_seed(fx["seed"] + 99991)
    fresh = fx["build"]()
    loaded = load_file(ckpt_path)
    for k, v in loaded.items():
        want = torch.int64 if k.endswith("num_batches_tracked") else fx["ckpt_dtype"]
        assert v.dtype == want, (name, k, v.dtype)
    fresh.load_state_dict(loaded, strict=True)
    fresh.eval()
    logits2, probs2 = reference(fresh, io["input"], fx["flavour"])
    rel_l = max_rel(logits2, io["logits"].double())
    rel_p = max_rel(probs2, io["probs"].double())
    assert rel_l < 1e-6 and rel_p < 1e-6, (name, rel_l, rel_p)
    if fx["ckpt_meta"] is not None:
        with safe_open(ckpt_path, "pt") as f:
            assert f.metadata() == fx["ckpt_meta"]

    feat = make_features(fx, model, gen) if fx.get("features") else None

    n_params = sum(p.numel() for p in model.parameters())
    return dict(name=name, flavour=fx["flavour"], keys=len(sd), params=n_params, features=feat,
                ckpt_bytes=os.path.getsize(ckpt_path), io_bytes=os.path.getsize(io_path),
                input_shape=tuple(x.shape), classes=logits.shape[1], std=std, amax=amax,
                pmax=probs.max().item(), rel_l=rel_l, rel_p=rel_p, dtype=str(fx["ckpt_dtype"]).split(".")[-1])


def seed_feature_points(model, x):
    """The seed model's five feature points, as timm names them for a ResNet."""
    act1 = model.relu(model.bn1(model.conv1(x))).clone()
    out = {"act1": act1}
    x = model.maxpool(act1)
    for i in range(1, 5):
        x = getattr(model, f"layer{i}")(x)
        out[f"layer{i}"] = x.clone()
    return out


def make_features(fx, model, gen):
    """Writes NAME.features.safetensors: timm's features_only outputs for every out_indices set."""
    name, spec = fx["name"], fx["features"]
    x = torch.randn(spec["input_shape"], generator=gen, dtype=torch.float32)
    m64 = copy.deepcopy(model).double().eval()
    stored = {}
    with torch.no_grad():
        if fx["flavour"] == "seed":
            points = ["act1", "layer1", "layer2", "layer3", "layer4"]
            every = seed_feature_points(m64, x.double())
            runs = [[(points[i], every[points[i]]) for i in s] for s in spec["out_indices"]]
        else:
            runs = []
            for s in spec["out_indices"]:
                net = FeatureListNet(copy.deepcopy(m64), out_indices=tuple(s)).eval()
                names = net.feature_info.module_name()
                outs = net(x.double())
                assert len(outs) == len(s) == len(names), (name, s, names)
                assert not any(k.startswith("fc") for k in net.state_dict()), "features mode has no head"
                runs.append(list(zip(names, outs)))
    for run in runs:
        for point, t in run:
            if point in stored:
                assert torch.equal(stored[point], t), (name, point)
            else:
                stored[point] = t
    meta = {
        "fixture": name,
        "flavour": fx["flavour"],
        "description": fx["description"],
        "config": dumps(fx["config"]),
        "out_indices": dumps(spec["out_indices"]),
    }
    tensors = {"input": x.contiguous()}
    for point, t in stored.items():
        assert t.abs().max().item() < 1e3 and t.std().item() > 1e-2, (name, point)
        tensors[point] = t.float().contiguous()
    path = os.path.join(OUT_DIR, f"{name}.features.safetensors")
    save(tensors, path, meta)
    return dict(points={k: tuple(v.shape) for k, v in stored.items()}, bytes=os.path.getsize(path),
                input_shape=tuple(x.shape), sets=spec["out_indices"])


def write_readme(rows):
    lines = [
        "# Test fixtures",
        "",
        "Small, randomly initialised Res2Net models and their PyTorch outputs, used to check the crate's",
        "loader and both execution paths against PyTorch. Each fixture `NAME` has `NAME.safetensors` (the",
        "model's `state_dict()` as PyTorch saves it, including the int64 `num_batches_tracked` scalars a",
        "loader must skip) and `NAME.io.safetensors` (`input` f32 [N,3,H,W], `logits` and `probs` f32",
        "[N,classes], computed in float64 in eval mode and stored as f32; `__metadata__` has `fixture`,",
        "`flavour`, `description` and an informational `config` JSON). The \"seed\" flavour is the seed",
        "document's `Res2Net` (biased convs, stride on conv1, first chunk passes through, SE C//16, softmax",
        "output); \"official\" is timm's `ResNet` + `Bottle2neck` (the layout of all published checkpoints).",
        "Every BatchNorm (affine and running statistics) and every conv/linear weight and bias is",
        "randomised, so no residual branch is zero. They were generated by",
        "`python tools/make_fixtures.py` (torch 2.x, timm 1.0.31, safetensors); Python is not needed to",
        "build or test the crate. Checkpoints are f32 except where the table says otherwise;",
        "`timm_meta_config.safetensors` carries a `res2net.config` JSON string in its `__metadata__`.",
        "Official fixtures with planes [16,32,64,128] have no downsample in layer1.0 (the 7x7 stem's 64",
        "channels already equal 16*4), so timm builds layer1.0 as a normal block; with planes [8,16,32,64]",
        "layer1.0 is a stride-1 stage block as in the published models. The `timm_dla*` fixtures are",
        "timm's `DLA` with `DlaBottle2neck` blocks, the layout of `dla60_res2net` and `dla60_res2next`",
        "(their `fc` is a 1x1 conv), at narrower channels.",
        "",
        "`NAME.features.safetensors` (where the second table lists it) holds the backbone outputs of",
        "timm's `features_only` mode (`timm.models._features.FeatureListNet`, which",
        "`timm.create_model(..., features_only=True, out_indices=...)` builds): `input` f32 [N,3,H,W] and",
        "one f32 [N,C,H,W] tensor per feature point, named by its module, computed in float64 once per",
        "`out_indices` set in `__metadata__[\"out_indices\"]` (the sets agree where they overlap, so each",
        "point is stored once). The seed flavour's points are taken from the seed module itself.",
        "",
        "| NAME | flavour | what it covers | input shape |",
        "|---|---|---|---|",
    ]
    desc = {fx["name"]: fx for fx in FIXTURES}
    for r in rows:
        fx = desc[r["name"]]
        c = fx["config"]
        if fx["flavour"] == "seed":
            cfg = (f"layers {c['layers']}, width {c['width']}, scales {c['scales']}, groups {c['groups']}, "
                   f"se {c['se']}, {c['num_classes']} classes")
        elif "levels" in c:
            cfg = (f"DLA levels {c['levels']}, channels {c['channels']}, base_width {c['base_width']}, "
                   f"scale {c['scale']}, cardinality {c['cardinality']}, {c['num_classes']} classes")
        else:
            cfg = (f"layers {c['layers']}, planes {c['planes']}, stem {c['stem']['kind']}, base_width "
                   f"{c['base_width']}, scale {c['scale']}, cardinality {c['cardinality']}, avg_down "
                   f"{c['avg_down']}, se {c['se']}, {c['num_classes']} classes")
        cfg = cfg.replace("True", "true").replace("False", "false")
        dtype = "" if r["dtype"] == "float32" else f"; **{r['dtype']} checkpoint**"
        shape = "[" + ",".join(str(d) for d in r["input_shape"]) + "]"
        lines.append(f"| `{r['name']}` | {r['flavour']} | {fx['description']} ({cfg}{dtype}) | {shape} |")
    lines += [
        "",
        "| NAME.features | input shape | out_indices sets | points (shape) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        f = r["features"]
        if f is None:
            continue
        shape = "[" + ",".join(str(d) for d in f["input_shape"]) + "]"
        sets = " ".join("(" + ",".join(str(i) for i in s) + ")" for s in f["sets"])
        points = ", ".join(f"`{k}` [{','.join(str(d) for d in v)}]" for k, v in f["points"].items())
        lines.append(f"| `{r['name']}` | {shape} | {sets} | {points} |")
    lines.append("")
    with open(os.path.join(OUT_DIR, "README.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    print(f"torch {torch.__version__}, timm {timm.__version__}", file=sys.stderr)
    os.makedirs(OUT_DIR, exist_ok=True)
    rows = []
    for fx in FIXTURES:
        r = make(fx)
        rows.append(r)
        print(f"{r['name']:24s} {r['flavour']:8s} keys={r['keys']:4d} params={r['params']:8d} "
              f"ckpt={r['ckpt_bytes'] / 1024:7.1f}KiB io={r['io_bytes']:5d}B in={r['input_shape']} "
              f"classes={r['classes']} logit_std={r['std']:.3f} max|logit|={r['amax']:.3f} "
              f"max_prob={r['pmax']:.3f} reload_rel={max(r['rel_l'], r['rel_p']):.1e} {r['dtype']}")
        if r["features"]:
            print(f"{'':24s} features={r['features']['bytes'] / 1024:.1f}KiB sets={r['features']['sets']}")
    write_readme(rows)
    total = sum(os.path.getsize(os.path.join(OUT_DIR, f)) for f in os.listdir(OUT_DIR))
    print(f"total {total / 1e6:.2f} MB in {OUT_DIR}")
    assert total < 17.5e6


if __name__ == "__main__":
    main()
