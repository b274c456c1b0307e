#!/usr/bin/env python3
"""Load a BoneStream checkpoint (safetensors) into numpy, to show it is readable outside Swift.

Role: reads the format with nothing but numpy (the `safetensors` package reads it too:
`safetensors.numpy.load_file(path)`). Tensor names and layouts follow PyTorch: conv weights OIHW,
dense weights (out, in), batch norm `running_mean` / `running_var`; Adam's moments are `adam.m.*` and
`adam.v.*`. See docs/engine.md.

Usage: python3 tools/load_checkpoint.py model.safetensors [--json]
"""
import argparse
import json
import struct

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def load(path):
    """(tensors as a dict of numpy arrays, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + length])
    metadata = header.pop("__metadata__", {})
    base = 8 + length
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data, DTYPES[info["dtype"]], (end - begin) // np.dtype(DTYPES[info["dtype"]]).itemsize,
                                      base + begin).reshape(info["shape"])
    return tensors, metadata


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    args = parser.parse_args()
    tensors, metadata = load(args.path)
    parameters = {k: v for k, v in tensors.items() if not k.startswith("adam.")}
    summary = {
        "metadata": metadata,
        "tensors": len(tensors),
        "parameters": int(sum(v.size for v in parameters.values())),
        "shapes": {k: list(v.shape) for k, v in sorted(parameters.items())},
        "sums": {k: float(v.astype(np.float64).sum()) for k, v in sorted(parameters.items())},
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(f"{args.path}: {len(parameters)} parameter tensors, {summary['parameters']:,} values; metadata {metadata}")
    for name, value in sorted(parameters.items()):
        print(f"  {name:48s} {str(list(value.shape)):20s} mean {float(value.mean()):+.5f}")


if __name__ == "__main__":
    main()
