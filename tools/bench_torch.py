#!/usr/bin/env python3
"""The same ResNet18 models and Inception-v4 (timm's) in PyTorch on CPU: the reference for `bonestream bench train`.

Role: builds ResNet18 vanilla / channel attention / CBAM exactly as BoneStream does (every conv with a
bias, Keras batch norm settings eps 1e-3 and momentum 0.01 in PyTorch's convention, the sex branch),
checks the parameter counts against the paper's Table 3, and times a training step (forward, MSE,
backward, Adam) on a batch of 40 and inference of one image (25 patches), with torch's threads set to
the number of cores. The gray input is replicated to 3 channels, as a PyTorch user would feed it.

Usage: python3 tools/bench_torch.py [--models vanilla,channel_attention,cbam,inception_v4] [--batch 40] [--size 224] [--steps 3] [--inferences 3] [--json]
Needs torch (CPU is enough), and timm for inception_v4 (its convolutions get biases, as ours have, so
the parameter count is the paper's 41,239,153).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

PAPER = {"vanilla": (11_191_473, 11_181_873), "channel_attention": (11_368_809, 11_359_209), "cbam": (11_369_691, 11_360_091),
         "inception_v4": (41_239_153, 41_175_985)}


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


def keras_pad(x, k, stride, value=0.0):
    """Keras/TensorFlow `same` padding: the odd pixel goes to the bottom and right."""
    h, w = x.shape[2], x.shape[3]
    def pads(size):
        out = (size + stride - 1) // stride
        total = max((out - 1) * stride + k - size, 0)
        return total // 2, total - total // 2
    (top, bottom), (left, right) = pads(h), pads(w)
    return F.pad(x, (left, right, top, bottom), value=value)


class Conv(nn.Conv2d):
    """nn.Conv2d with `same` padding: PyTorch's symmetric padding for speed, or Keras's exact
    asymmetric one (keras=True) to reproduce BoneStream's outputs."""

    def __init__(self, cin, cout, k, stride=1, bias=True, keras=False):
        super().__init__(cin, cout, k, stride, 0 if keras else k // 2, bias=bias)
        self.keras = keras

    def forward(self, x):
        return super().forward(keras_pad(x, self.kernel_size[0], self.stride[0]) if self.keras else x)


class Attention(nn.Module):
    def __init__(self, c, spatial, ratio=8, keras=False):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, c // ratio), nn.Linear(c // ratio, c)
        self.spatial = Conv(2, 1, 7, bias=False, keras=keras) if spatial else None

    def forward(self, x):
        mlp = lambda v: self.fc2(torch.relu(self.fc1(v)))
        gate = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))
        x = x * gate[:, :, None, None]
        if self.spatial is not None:
            pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
            x = x * torch.sigmoid(self.spatial(pooled))
        return x


class Block(nn.Module):
    def __init__(self, cin, cout, stride, kind, keras=False):
        super().__init__()
        self.conv1, self.bn1 = Conv(cin, cout, 3, stride, keras=keras), bn(cout)
        self.conv2, self.bn2 = Conv(cout, cout, 3, 1, keras=keras), bn(cout)
        self.attention = None if kind == "vanilla" else Attention(cout, kind == "cbam", keras=keras)
        self.downsample = nn.Sequential(Conv(cin, cout, 1, stride, keras=keras), bn(cout)) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.attention is not None:
            y = self.attention(y)
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """Parameter names equal BoneStream's checkpoint names, so `load_state_dict` takes its tensors."""

    def __init__(self, kind, widths=(64, 128, 256, 512), keras=False):
        super().__init__()
        self.keras = keras
        self.conv1, self.bn1 = Conv(3, widths[0], 7, 2, keras=keras), bn(widths[0])
        self.attention = None if kind == "vanilla" else Attention(widths[0], kind == "cbam", keras=keras)
        self.maxpool = nn.MaxPool2d(3, 2, 0 if keras else 1)
        layers, cin = [], widths[0]
        for stage, width in enumerate(widths):
            layers.append(nn.Sequential(Block(cin, width, 2 if stage else 1, kind, keras), Block(width, width, 1, kind, keras)))
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.sex = nn.ModuleDict({"dense": nn.Linear(1, 16)})
        self.fc = nn.Linear(widths[-1] + 16, 1)

    def forward(self, image, sex):
        x = torch.relu(self.bn1(self.conv1(image)))
        if self.attention is not None:
            x = self.attention(x)
        x = self.maxpool(keras_pad(x, 3, 2, float("-inf")) if self.keras else x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.cat([x.mean((2, 3)), torch.relu(self.sex["dense"](sex))], 1))


class InceptionV4(nn.Module):
    """timm's inception_v4 (pip install timm) as BoneStream builds it: a bias on every convolution,
    Keras's batch norm settings, global average pool, dropout 0.2, the sex branch, Dense(1552 -> 1)."""

    def __init__(self):
        super().__init__()
        import timm
        self.backbone = timm.create_model("inception_v4", pretrained=False, num_classes=0, drop_rate=0.2)
        for module in self.backbone.modules():
            if isinstance(module, nn.Conv2d) and module.bias is None:
                module.bias = nn.Parameter(torch.zeros(module.out_channels))
            elif isinstance(module, nn.BatchNorm2d):
                module.eps, module.momentum = 1e-3, 0.01
        self.sex = nn.ModuleDict({"dense": nn.Linear(1, 16)})
        self.last_linear = nn.Linear(1536 + 16, 1)

    def forward(self, image, sex):
        return self.last_linear(torch.cat([self.backbone(image), torch.relu(self.sex["dense"](sex))], 1))


def build(kind):
    return InceptionV4() if kind == "inception_v4" else ResNet18(kind)


def counts(model):
    trainable = sum(p.numel() for p in model.parameters())
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return trainable + stats, trainable


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="vanilla,channel_attention,cbam")
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--inferences", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {}
    aliases = {"resnet18": "vanilla", "resnet18-cam": "channel_attention", "resnet18-cbam": "cbam", "inception-v4": "inception_v4"}
    for kind in (aliases.get(k, k) for k in args.models.split(",")):
        try:
            model = build(kind)
        except ImportError as error:  # timm missing: the other models are still measured
            print(f"{kind}: skipped ({error}; pip install timm)", file=sys.stderr)
            continue
        total, trainable = counts(model)
        assert (total, trainable) == PAPER[kind], f"{kind}: {total:,} / {trainable:,} parameters, the paper has {PAPER[kind]}"
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        image = torch.rand(args.batch, 1, args.size, args.size).expand(-1, 3, -1, -1).contiguous()
        sex = (torch.arange(args.batch) % 2).float()[:, None]
        target = (12 + 5 * torch.arange(args.batch)).float()[:, None]

        def step():
            optimizer.zero_grad(set_to_none=False)
            loss = torch.mean((model(image, sex) - target) ** 2)
            loss.backward()
            optimizer.step()

        model.train()
        step()  # warm-up
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        step_seconds = (time.perf_counter() - start) / args.steps
        model.eval()
        patches = torch.rand(25, 1, args.size, args.size).expand(-1, 3, -1, -1).contiguous()
        sex25 = torch.zeros(25, 1)
        with torch.no_grad():
            model(patches, sex25)
            start = time.perf_counter()
            for _ in range(args.inferences):
                model(patches, sex25)
            inference_seconds = (time.perf_counter() - start) / args.inferences
        # The same FLOP convention as BoneStream: 2 x multiply-adds of convs and dense layers, gray input
        # (the folded first conv), training = 3 x forward.
        flops = 0.0
        hooks = []

        first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))

        def count(module, inputs, output):
            nonlocal flops
            if isinstance(module, nn.Conv2d):
                cin = 1 if module is first_conv else module.in_channels
                flops += 2 * module.out_channels * cin * module.kernel_size[0] * module.kernel_size[1] * output.shape[2] * output.shape[3]
            elif isinstance(module, nn.Linear):
                flops += 2 * module.in_features * module.out_features

        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                hooks.append(m.register_forward_hook(count))
        with torch.no_grad():
            model(patches[:1], sex25[:1])
        for h in hooks:
            h.remove()
        results[kind] = {
            "params": total, "trainable": trainable,
            "train_step_ms": step_seconds * 1000, "train_patches_per_s": args.batch / step_seconds,
            "train_gflops": 3 * flops * args.batch / step_seconds / 1e9,
            "inference_ms_per_image": inference_seconds * 1000, "inference_gflops": flops * 25 / inference_seconds / 1e9,
        }
    if args.json:
        print(json.dumps(results))
    else:
        for kind, r in results.items():
            print(f"pytorch {torch.__version__} {kind}: {r['params']:,} params; train {r['train_patches_per_s']:.2f} patches/s "
                  f"({r['train_gflops']:.0f} GFLOP/s); inference {r['inference_ms_per_image']:.0f} ms/image")


if __name__ == "__main__":
    main()
