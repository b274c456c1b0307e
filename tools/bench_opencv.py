#!/usr/bin/env python3
"""The same preprocessing and augmentation work as `bonestream bench`, done the best way Python can.

Role: the reference side of BoneStream's benchmarks (docs/performance.md); `bonestream bench ...
--compare` runs it and prints both in one table. OpenCV does the pixel work; augmentation reads
patches from a cached, preprocessed numpy array (no decoding per patch), one process and a pool of
two processes (the machine's cores) writing into preallocated batch arrays.

Usage:
  python3 tools/bench_opencv.py preprocess --dir DIR_OF_PNGS [--json]
  python3 tools/bench_opencv.py augment --dir DIR_OF_PNGS [--seconds S] [--json]
Needs opencv-python-headless and numpy.
"""
import argparse
import glob
import json
import math
import multiprocessing as mp
import os
import time

import cv2
import numpy as np

cv2.setNumThreads(1)  # one core per process; the pool uses the cores
CROP = (0.05, 0.05, 0.05, 0.05)
SIZE, PATCH, PER_SIDE = 500, 224, 5
OVERLAP = (PATCH * PER_SIDE - SIZE) // (PER_SIDE - 1)
OFFSETS = [i * (PATCH - OVERLAP) for i in range(PER_SIDE)]


def preprocess(path, times=None):
    t0 = time.perf_counter()
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    t1 = time.perf_counter()
    h, w = image.shape
    top, bottom, left, right = CROP
    cropped = np.ascontiguousarray(image[int(h * top):int(h * (1 - bottom)), int(w * left):int(w * (1 - right))])
    t2 = time.perf_counter()
    resized = cv2.resize(cropped, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    t3 = time.perf_counter()
    out = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(resized)
    t4 = time.perf_counter()
    if times is not None:
        times["decode"] += t1 - t0
        times["crop"] += t2 - t1
        times["resize"] += t3 - t2
        times["clahe"] += t4 - t3
    return out


def _preprocess_many(paths):
    for p in paths:
        preprocess(p)
    return len(paths)


def bench_preprocess(paths, rounds):
    times = {"decode": 0.0, "crop": 0.0, "resize": 0.0, "clahe": 0.0}
    start = time.perf_counter()
    for _ in range(rounds):
        for p in paths:
            preprocess(p, times)
    one = rounds * len(paths) / (time.perf_counter() - start)
    work = paths * rounds
    with mp.Pool(2) as pool:
        pool.map(_preprocess_many, [work[:2], work[2:4]])  # warm up the workers
        start = time.perf_counter()
        done = sum(pool.map(_preprocess_many, [work[0::2], work[1::2]]))
        two = done / (time.perf_counter() - start)
    n = rounds * len(paths)
    return {"images_per_s_1core": one, "images_per_s_2cores": two,
            "ms_per_image": {k: 1000 * v / n for k, v in times.items()}}


def augment_op(op, patch, rng):
    if op == "identity":
        return np.ascontiguousarray(patch)
    if op == "hflip":
        return cv2.flip(patch, 1)
    if op == "vflip":
        return cv2.flip(patch, 0)
    if op == "flip":
        return cv2.flip(patch, 1 if rng.random() < 0.5 else 0)
    if op == "rotate":
        c = (PATCH - 1) / 2.0
        m = cv2.getRotationMatrix2D((c, c), rng.uniform(-30, 30), 1.0)
        return cv2.warpAffine(patch, m, (PATCH, PATCH), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if op == "blur":
        sigma = rng.uniform(0.2, 1.0)
        k = 2 * math.ceil(2 * sigma) + 1
        return cv2.GaussianBlur(patch, (k, k), sigma)
    raise ValueError(op)


def run_ops(cache, ops, seconds, seed):
    """Patches/s drawing (image, patch, op) at random, writing into a batch array of 40."""
    rng = np.random.default_rng(seed)
    batch = np.empty((40, PATCH, PATCH), np.uint8)
    done = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for slot in range(40):
            image = cache[rng.integers(len(cache))]
            p = rng.integers(PER_SIDE * PER_SIDE)
            y, x = OFFSETS[p // PER_SIDE], OFFSETS[p % PER_SIDE]
            op = ops[rng.integers(len(ops))]
            batch[slot] = augment_op(op, image[y:y + PATCH, x:x + PATCH], rng)
        done += 40
    return done / (time.perf_counter() - start)


_CACHE = None


def _init(cache):
    global _CACHE
    _CACHE = cache


def _pool_worker(args):
    ops, seconds, seed = args
    return run_ops(_CACHE, ops, seconds, seed)


def bench_augment(paths, seconds):
    cache = np.stack([preprocess(p) for p in paths])
    result = {"per_op_patches_per_s": {}, "pools": {}}
    for op in ("identity", "hflip", "vflip", "rotate", "blur"):
        result["per_op_patches_per_s"][op] = run_ops(cache, [op], seconds, 1)
    for name, ops in (("identity+flip", ["identity", "flip"]), ("identity+flip+rotate+blur", ["identity", "flip", "rotate", "blur"])):
        one = run_ops(cache, ops, seconds, 2)
        with mp.Pool(2, initializer=_init, initargs=(cache,)) as pool:
            two = sum(pool.map(_pool_worker, [(ops, seconds, 3), (ops, seconds, 4)]))
        result["pools"][name] = {"1core": one, "2cores": two}
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["preprocess", "augment"])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    paths = sorted(glob.glob(os.path.join(args.dir, "*.png")))
    if not paths:
        raise SystemExit(f"no PNG files in {args.dir}")
    result = bench_preprocess(paths, args.rounds) if args.what == "preprocess" else bench_augment(paths, args.seconds)
    result["opencv"] = cv2.__version__
    result["images"] = len(paths)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
