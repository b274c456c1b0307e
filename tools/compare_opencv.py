#!/usr/bin/env python3
"""Compares BoneStream's preprocessing and augmentation kernels with OpenCV's, image by image.

Role: a correctness side check (docs/performance.md). For each image it runs `bonestream preview`
(which writes every step as PNG) and redoes each step with OpenCV on the same input:
  crop (numpy slicing, as the authors), resize (cv2.resize INTER_LINEAR, or INTER_AREA with --area),
  CLAHE (cv2.createCLAHE(2.0, (8, 8)) on our resized image; also against the authors' route, CLAHE on
  the L channel of LAB of the gray image made colour), and on the centre patch: flips
  (cv2.flip), rotation by +-30 degrees (cv2.warpAffine, BORDER_CONSTANT 0, centre (size-1)/2) and
  Gaussian blur with sigma 0.2 and 1.0 (cv2.GaussianBlur, ksize 2*ceil(2*sigma)+1).
It prints the largest and mean absolute difference per step, in gray levels.

Usage: python3 tools/compare_opencv.py [--bonestream PATH] [--count N] [--area] [--json]
       (run where `bonestream run` made work/tables; needs opencv-python-headless and numpy)
"""
import argparse
import csv
import json
import math
import os
import subprocess
import tempfile

import cv2
import numpy as np


def load(path):
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return image


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bonestream", default=".build/release/bonestream")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--tables", default="work/tables")
    parser.add_argument("--area", action="store_true", help="compare --set preprocess.resize=area with INTER_AREA")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    ids = []
    for split in ("train", "validation", "test"):
        with open(f"{args.tables}/{split}.csv", newline="") as f:
            ids += [int(r["index"]) for r in csv.DictReader(f)]
    ids = sorted(ids)[: args.count]
    crop = (0.05, 0.05, 0.05, 0.05)
    steps = {}

    def record(step, ours, theirs):
        d = np.abs(ours.astype(np.int32) - theirs.astype(np.int32))
        entry = steps.setdefault(step, {"max": 0, "sum": 0.0, "n": 0, "over1": 0})
        entry["max"] = max(entry["max"], int(d.max()))
        entry["sum"] += float(d.sum())
        entry["n"] += d.size
        entry["over1"] += int((d > 1).sum())

    with tempfile.TemporaryDirectory() as tmp:
        for image_id in ids:
            out = f"{tmp}/{image_id}"
            extra = ["--set", "preprocess.resize=area"] if args.area else []
            subprocess.run([args.bonestream, "preview", str(image_id), "--out", out, "--quiet"] + extra,
                           check=True, stdout=subprocess.DEVNULL)
            original = load(f"{out}/01-original.png")
            h, w = original.shape
            t, b, l, r = crop
            cropped = original[int(h * t):int(h * (1 - b)), int(w * l):int(w * (1 - r))]
            record("crop", load(f"{out}/02-crop.png"), cropped)
            interpolation = cv2.INTER_AREA if args.area else cv2.INTER_LINEAR
            record("resize " + ("area" if args.area else "bilinear"), load(f"{out}/03-resize.png"),
                   cv2.resize(cropped, (500, 500), interpolation=interpolation))
            ours_resized = load(f"{out}/03-resize.png")
            clahe_op = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
            record("clahe", load(f"{out}/04-clahe.png"), clahe_op.apply(ours_resized))
            # The authors' route: gray -> BGR -> LAB, CLAHE on L, back to BGR, then gray for the model.
            lab = cv2.cvtColor(cv2.cvtColor(ours_resized, cv2.COLOR_GRAY2BGR), cv2.COLOR_BGR2LAB)
            lab[..., 0] = clahe_op.apply(lab[..., 0])
            authors = cv2.cvtColor(cv2.cvtColor(lab, cv2.COLOR_LAB2BGR), cv2.COLOR_BGR2GRAY)
            record("clahe vs LAB route", load(f"{out}/04-clahe.png"), authors)
            patch = load(f"{out}/07-patch-identity.png")
            clahe = load(f"{out}/04-clahe.png")
            record("patch (centre)", patch, clahe[138:362, 138:362])
            record("hflip", load(f"{out}/08-patch-hflip.png"), cv2.flip(patch, 1))
            record("vflip", load(f"{out}/09-patch-vflip.png"), cv2.flip(patch, 0))
            c = (patch.shape[1] - 1) / 2.0
            for degrees, name in ((30, "10-patch-rotate+30.png"), (-30, "11-patch-rotate-30.png")):
                m = cv2.getRotationMatrix2D((c, c), degrees, 1.0)
                theirs = cv2.warpAffine(patch, m, (patch.shape[1], patch.shape[0]), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                record("rotate", load(f"{out}/{name}"), theirs)
            for sigma, name in ((0.2, "12-patch-blur-min.png"), (1.0, "13-patch-blur-max.png")):
                k = 2 * math.ceil(2 * sigma) + 1
                record(f"blur sigma {sigma}", load(f"{out}/{name}"), cv2.GaussianBlur(patch, (k, k), sigma))

    rows = [{"step": k, "max_abs_diff": v["max"], "mean_abs_diff": v["sum"] / v["n"], "share_over_1": v["over1"] / v["n"]}
            for k, v in steps.items()]
    if args.json:
        print(json.dumps({"images": len(ids), "opencv": cv2.__version__, "steps": rows}))
        return
    print(f"BoneStream vs OpenCV {cv2.__version__} on {len(ids)} phantom images (gray levels)")
    print(f"| {'step':<20} | max abs diff | mean abs diff | pixels off by >1 |")
    print(f"|{'-' * 22}|--------------|---------------|------------------|")
    for row in rows:
        print(f"| {row['step']:<20} | {row['max_abs_diff']:>12} | {row['mean_abs_diff']:>13.4f} | {100 * row['share_over_1']:>15.3f}% |")


if __name__ == "__main__":
    main()
