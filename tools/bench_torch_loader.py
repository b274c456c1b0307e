#!/usr/bin/env python3
"""What a PyTorch user would otherwise write: a DataLoader with OpenCV augmentation and 2 workers.

Role: the second Python reference of `bonestream bench stream` (docs/performance.md). A map-style
Dataset memory-maps BoneStream's preprocessed cache (images-<gen>.u8); each item draws an image, one of
the 25 patches and an operation from the pool, augments it with OpenCV exactly as
tools/bench_stream_python.py does, and returns a uint8 tensor with its label. A DataLoader with
batch_size 40 and N worker processes collates the patches into batches; the main process counts
patches/s. Nothing is converted to float, as in our own figures.

Usage: python3 tools/bench_torch_loader.py --cache work/cache/<key> [--workers 2] [--samples 20000] [--pool identity,flip] [--json]
Needs torch, numpy, opencv-python-headless.
"""
import argparse
import glob
import json
import os
import time

import numpy as np
import torch

from bench_stream_python import OFFSETS, PATCH, PER_SIDE, SIZE, augment


class PatchDataset(torch.utils.data.Dataset):
    def __init__(self, images_path, samples, ops):
        self.images_path, self.samples, self.ops = images_path, samples, ops
        self.images = None

    def __len__(self):
        return self.samples

    def __getitem__(self, i):
        if self.images is None:  # opened in each worker process
            self.images = np.memmap(self.images_path, np.uint8, "r").reshape(-1, SIZE, SIZE)
        rng = np.random.default_rng(i)
        image = self.images[rng.integers(len(self.images))]
        p = rng.integers(PER_SIDE * PER_SIDE)
        y, x = OFFSETS[p // PER_SIDE], OFFSETS[p % PER_SIDE]
        patch = augment(self.ops[rng.integers(len(self.ops))], image[y:y + PATCH, x:x + PATCH], rng)
        return torch.from_numpy(np.ascontiguousarray(patch)).unsqueeze(0), torch.tensor([float(i % 228)])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", required=True, help="a BoneStream cache folder (work/cache/<key>)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--pool", default="identity,flip")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images_path = sorted(glob.glob(os.path.join(args.cache, "images-*.u8")))[-1]
    dataset = PatchDataset(images_path, args.samples, args.pool.split(","))
    loader = torch.utils.data.DataLoader(dataset, batch_size=40, num_workers=args.workers, shuffle=True, persistent_workers=False)
    received, start = 0, None
    for images, _ in loader:
        start = start or time.perf_counter()  # from the first batch: worker start-up is not counted
        received += images.shape[0]
    rate = (received - 40) / (time.perf_counter() - start)
    result = {"workers": args.workers, "patches": received, "patches_per_s": rate, "pool": args.pool.split(",")}
    print(json.dumps(result) if args.json else f"pytorch DataLoader, {args.workers} workers, pool {args.pool}: {rate:.0f} patches/s")


if __name__ == "__main__":
    main()
