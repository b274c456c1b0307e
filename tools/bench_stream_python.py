#!/usr/bin/env python3
"""The strongest Python design for the same stream: N pyzmq producer processes push uint8 batches to a consumer.

Role: the Python reference of `bonestream bench stream` (docs/performance.md). Producers memory-map
BoneStream's preprocessed cache (images-<gen>.u8), cut random 224x224 patches, augment them with
OpenCV (the pool given), and push 40-patch uint8 batches (header, pixels, labels: our wire layout) over
ipc:// to one PULL consumer, which counts patches/s. No flow control beyond ZeroMQ's high-water marks.

Usage: python3 tools/bench_stream_python.py --cache work/cache/<key> [--producers 2] [--samples 80000] [--pool identity,flip]
Needs pyzmq, numpy, opencv-python-headless.
"""
import argparse
import glob
import json
import math
import multiprocessing as mp
import os
import tempfile
import time

import cv2
import numpy as np
import zmq

cv2.setNumThreads(1)
PATCH, PER_SIDE, SIZE, BATCH = 224, 5, 500, 40
OFFSETS = [i * (PATCH - (PATCH * PER_SIDE - SIZE) // (PER_SIDE - 1)) for i in range(PER_SIDE)]


def augment(op, patch, rng):
    if op == "identity":
        return patch
    if op == "flip":
        return cv2.flip(patch, 1 if rng.random() < 0.5 else 0)
    if op == "rotate":
        c = (PATCH - 1) / 2.0
        return cv2.warpAffine(patch, cv2.getRotationMatrix2D((c, c), rng.uniform(-30, 30), 1.0), (PATCH, PATCH),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if op == "blur":
        sigma = rng.uniform(0.2, 1.0)
        k = 2 * math.ceil(2 * sigma) + 1
        return cv2.GaussianBlur(patch, (k, k), sigma)
    raise ValueError(op)


def producer(images_path, endpoint, batches, ops, seed):
    images = np.memmap(images_path, np.uint8, "r").reshape(-1, SIZE, SIZE)
    push = zmq.Context().socket(zmq.PUSH)
    push.connect(endpoint)
    rng = np.random.default_rng(seed)
    header = bytes(64)
    labels = bytes(16 * BATCH)
    for _ in range(batches):
        pixels = np.empty((BATCH, PATCH, PATCH), np.uint8)
        for slot in range(BATCH):
            image = images[rng.integers(len(images))]
            p = rng.integers(PER_SIDE * PER_SIDE)
            y, x = OFFSETS[p // PER_SIDE], OFFSETS[p % PER_SIDE]
            pixels[slot] = augment(ops[rng.integers(len(ops))], image[y:y + PATCH, x:x + PATCH], rng)
        push.send_multipart([header, pixels, labels], copy=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", required=True, help="a BoneStream cache folder (work/cache/<key>)")
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=80000)
    parser.add_argument("--pool", default="identity,flip")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    images_path = sorted(glob.glob(os.path.join(args.cache, "images-*.u8")))[-1]
    ops = args.pool.split(",")
    batches = args.samples // BATCH // args.producers
    folder = tempfile.mkdtemp()
    endpoint = f"ipc://{folder}/data"
    pull = zmq.Context().socket(zmq.PULL)
    pull.bind(endpoint)
    procs = [mp.Process(target=producer, args=(images_path, endpoint, batches, ops, seed)) for seed in range(args.producers)]
    for p in procs:
        p.start()
    received, start = 0, None
    for _ in range(batches * args.producers):
        frames = pull.recv_multipart(copy=False)
        start = start or time.perf_counter()
        received += len(frames[1]) // (PATCH * PATCH)
    rate = received / (time.perf_counter() - start)
    for p in procs:
        p.join()
    result = {"producers": args.producers, "patches": received, "patches_per_s": rate, "pool": ops}
    print(json.dumps(result) if args.json else f"python pyzmq, {args.producers} producers, pool {args.pool}: {rate:.0f} patches/s")


if __name__ == "__main__":
    main()
