#!/usr/bin/env python3
"""Load a BoneStream checkpoint into the PyTorch model of tools/bench_torch.py and predict.

Role: proof that a checkpoint is a PyTorch user's model: the tensors go through `load_state_dict`
unchanged (names and layouts are PyTorch's), and with Keras's `same` padding the predictions equal
BoneStream's (the test compares them). The gray input is replicated to 3 channels.

Usage: python3 tools/torch_equivalence.py CHECKPOINT INPUT.f32 --model cbam --size 32 --count 3 [--widths 4,8,8,8]
INPUT.f32: count images of size x size float32, then count sex values (float32); prints a JSON list.
Needs torch and numpy.
"""
import argparse
import json

import numpy as np
import torch

from bench_torch import ResNet18
from load_checkpoint import load


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("input")
    parser.add_argument("--model", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--widths", default="64,128,256,512")
    args = parser.parse_args()
    tensors, _ = load(args.checkpoint)
    model = ResNet18(args.model, tuple(int(w) for w in args.widths.split(",")), keras=True)
    state = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if not k.startswith("adam.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    assert not missing and not unexpected, f"missing {missing}, unexpected {unexpected}"
    raw = np.fromfile(args.input, np.float32)
    n, s = args.count, args.size
    images = torch.from_numpy(raw[:n * s * s].reshape(n, 1, s, s).copy()).expand(-1, 3, -1, -1)
    sex = torch.from_numpy(raw[n * s * s:n * s * s + n].reshape(n, 1).copy())
    model.eval()
    with torch.no_grad():
        print(json.dumps(model(images, sex)[:, 0].tolist()))


if __name__ == "__main__":
    main()
