#!/usr/bin/env python3
"""Checks that phantom radiographs carry a learnable age signal, with no deep-learning framework.

Role: a side check for `bonestream phantoms` (docs/phantoms.md). It reads a phantom dataset in RSNA's
layout, crops 5% from every side, resizes to 64x64, and fits ridge regression on the pixels (plus sex)
with 5-fold cross-validation, printing its mean absolute error beside the predict-the-mean baseline.
A linear model on raw pixels is a weak learner: if it beats the baseline, a CNN will do far better.

Usage: python3 tools/phantom_learnability.py DATA_DIR   (needs numpy and pillow)
"""
import csv
import sys

import numpy as np
from PIL import Image


def load(root):
    rows = []
    with open(f"{root}/boneage-training-dataset.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append((f"{root}/boneage-training-dataset/{r['id']}.png", float(r["boneage"]), r["male"] == "True"))
    with open(f"{root}/Validation Dataset.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append((f"{root}/boneage-validation-dataset/{r['Image ID']}.png", float(r["Bone Age (months)"]),
                         r["male"].lower() == "true"))
    features, ages = [], []
    for path, age, male in rows:
        image = Image.open(path)
        w, h = image.size
        image = image.crop((int(0.05 * w), int(0.05 * h), int(0.95 * w), int(0.95 * h))).resize((64, 64), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float64).ravel() / 255.0
        features.append(np.concatenate([pixels, [1.0 if male else 0.0]]))
        ages.append(age)
    return np.array(features), np.array(ages)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "data/phantoms"
    x, y = load(root)
    n = len(y)
    folds = np.arange(n) % 5
    np.random.default_rng(0).shuffle(folds)
    model_errors, baseline_errors = [], []
    for k in range(5):
        train, test = folds != k, folds == k
        mean_x, mean_y = x[train].mean(0), y[train].mean()
        xt = x[train] - mean_x
        ridge = 10.0 * np.eye(x.shape[1])
        w = np.linalg.solve(xt.T @ xt + ridge, xt.T @ (y[train] - mean_y))
        predicted = (x[test] - mean_x) @ w + mean_y
        model_errors.append(np.abs(predicted - y[test]))
        baseline_errors.append(np.abs(mean_y - y[test]))
    model = np.concatenate(model_errors).mean()
    baseline = np.concatenate(baseline_errors).mean()
    print(f"images: {n}")
    print(f"predict-the-mean baseline MAE: {baseline:.1f} months")
    print(f"ridge regression on 64x64 pixels MAE: {model:.1f} months ({100 * (1 - model / baseline):.0f}% lower)")


if __name__ == "__main__":
    main()
