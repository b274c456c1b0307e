#!/usr/bin/env python3
"""Read BoneStream shards straight into numpy, with no BoneStream process running.

A shard folder (from `bonestream record --out DIR`, or `bonestream train --record DIR`) holds
manifest.json and shard-NNNNNN.bss files; docs/shards.md is the format. Each record is one batch as it
travelled: a 64-byte header, the pixels (n x height x width uint8) and n 16-byte labels.

In a training script:
    from shards import read_shards, ShardDataset
    for header, pixels, labels in read_shards("work/shards"):   # pixels: uint8 N x 1 x H x W (a view of the file)
        images = pixels.astype(np.float32) / 255.0
        ages, male = labels["age"], labels["male"]
    # or as a PyTorch IterableDataset (float32 in [0, 1], optionally 3 channels, shuffled by batch):
    #   torch.utils.data.DataLoader(ShardDataset("work/shards", rgb=True, shuffle=True, seed=1), batch_size=None)

Command line:
    python3 tools/shards.py DIR [--verify] [--summary] [--bench]
--verify checks every record's CRC-32C (fast with the `crc32c` or `google-crc32c` package, slow in pure
Python otherwise) and the manifest's SHA-256 of each file.
"""
import argparse
import hashlib
import json
import os
import struct
import sys
import time

import numpy as np

HEADER = np.dtype([("magic", "<u4"), ("version", "<u2"), ("kind", "u1"), ("dtype", "u1"), ("flags", "<u2"),
                   ("reserved", "<u2"), ("epoch", "<u4"), ("batch", "<u4"), ("batches", "<u4"), ("n", "<u4"),
                   ("height", "<u2"), ("width", "<u2"), ("seed", "<u8"), ("config_hash", "u1", 16), ("pad", "u1", 8)])
LABEL = np.dtype([("image", "<u4"), ("patch", "u1"), ("operation", "u1"), ("male", "u1"), ("reserved", "u1"),
                  ("age", "<f4"), ("parameter", "<f4")])
ENTRY = np.dtype([("offset", "<u8"), ("length", "<u8"), ("kind", "u1"), ("pad", "u1", 3), ("epoch", "<u4"),
                  ("batch", "<u4"), ("n", "<u4")])
FILE_MAGIC = b"BSSHARD1"
FOOTER_MAGIC = b"BSSINDEX"
RECORD_MAGIC = 0x43455242
PREFIX = struct.Struct("<IIIIQ8I")  # magic, crc32c, frames, reserved, payload length, 8 frame lengths (then 8 bytes reserved)
assert HEADER.itemsize == 64 and LABEL.itemsize == 16 and ENTRY.itemsize == 32 and PREFIX.size == 56


def _crc32c_function():
    try:
        import crc32c  # pip install crc32c
        return crc32c.crc32c, "crc32c"
    except ImportError:
        pass
    try:
        import google_crc32c  # pip install google-crc32c
        return google_crc32c.value, "google-crc32c"
    except ImportError:
        pass
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)

    def slow(data):
        crc = 0xFFFFFFFF
        for byte in bytes(data):
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    return slow, "pure Python (slow: pip install crc32c)"


class ShardError(Exception):
    pass


class Shard:
    """One shard file, memory-mapped; `entries` is its index (offset, length, kind, epoch, batch, n)."""

    def __init__(self, path):
        self.path = path
        self.data = np.memmap(path, dtype=np.uint8, mode="r")
        if bytes(self.data[:8]) != FILE_MAGIC:
            raise ShardError(f"{path}, byte 0: not a BoneStream shard")
        footer = bytes(self.data[-64:])
        if footer[:8] != FOOTER_MAGIC:
            raise ShardError(f"{path}, byte {len(self.data) - 64}: no footer (an incomplete shard)")
        index_offset, entries = struct.unpack_from("<QQ", footer, 8)
        self.entries = np.frombuffer(self.data, ENTRY, count=entries, offset=index_offset)

    def record(self, i, verify=None):
        """(header, pixels uint8 N x 1 x H x W, labels) of record i; views of the file, no copy."""
        offset, length = int(self.entries["offset"][i]), int(self.entries["length"][i])
        magic, crc, frames, _, payload, *lengths = PREFIX.unpack_from(self.data, offset)
        if magic != RECORD_MAGIC or frames != 3 or 64 + payload != length:
            raise ShardError(f"{self.path}, byte {offset}: not a record")
        if verify is not None and verify(memoryview(self.data[offset + 8:offset + length])) != crc:
            raise ShardError(f"{self.path}, byte {offset}: CRC-32C mismatch")
        start = offset + 64
        header = np.frombuffer(self.data, HEADER, count=1, offset=start)[0]
        n, h, w = int(header["n"]), int(header["height"]), int(header["width"])
        if lengths[0] != 64 or lengths[1] != n * h * w or lengths[2] != n * 16:
            raise ShardError(f"{self.path}, byte {offset}: frame lengths disagree with the header")
        pixels = np.frombuffer(self.data, np.uint8, count=n * h * w, offset=start + 64).reshape(n, 1, h, w)
        labels = np.frombuffer(self.data, LABEL, count=n, offset=start + 64 + n * h * w)
        return header, pixels, labels


def load_manifest(directory):
    with open(os.path.join(directory, "manifest.json")) as f:
        manifest = json.load(f)
    if manifest.get("format") != "bonestream-shards" or manifest.get("version") != 1:
        raise ShardError(f"{directory}/manifest.json: not a version 1 shard manifest")
    return manifest


def read_shards(directory, verify=False, kind=None):
    """Every batch in recorded order: (header, pixels, labels). kind: None, "train" or "validation"."""
    crc = _crc32c_function()[0] if verify else None
    wanted = {"train": 0, "validation": 1}.get(kind)
    for listed in load_manifest(directory)["shards"]:
        shard = Shard(os.path.join(directory, listed["file"]))
        for i in range(len(shard.entries)):
            if wanted is None or shard.entries["kind"][i] == wanted:
                yield shard.record(i, crc)


try:
    import torch

    class ShardDataset(torch.utils.data.IterableDataset):
        """Recorded batches as float32 tensors in [0, 1]: (images N x C x H x W, ages N, male N)."""

        def __init__(self, directory, rgb=False, shuffle=False, seed=0, kind="train"):
            self.directory, self.rgb, self.shuffle, self.seed, self.kind = directory, rgb, shuffle, seed, kind
            self.epoch = 0

        def __iter__(self):
            batches = list(read_shards(self.directory, kind=self.kind))
            order = np.arange(len(batches))
            if self.shuffle:
                np.random.default_rng((self.seed, self.epoch)).shuffle(order)
            self.epoch += 1
            for i in order:
                _, pixels, labels = batches[i]
                images = torch.from_numpy(pixels.astype(np.float32) / 255.0)
                if self.rgb:
                    images = images.expand(-1, 3, -1, -1)
                yield images, torch.from_numpy(labels["age"].copy()), torch.from_numpy(labels["male"].astype(np.float32))
except ImportError:
    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--verify", action="store_true", help="check every CRC-32C and every file's SHA-256")
    parser.add_argument("--summary", action="store_true", help="print one JSON object of counts and sums")
    parser.add_argument("--bench", action="store_true", help="time reading every batch as float32")
    args = parser.parse_args()
    manifest = load_manifest(args.directory)
    if args.verify:
        for listed in manifest["shards"]:
            digest = hashlib.sha256()
            with open(os.path.join(args.directory, listed["file"]), "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            if digest.hexdigest() != listed["sha256"]:
                sys.exit(f"{listed['file']}: SHA-256 differs from the manifest's")
    batches = samples = pixel_sum = 0
    age_sum = 0.0
    started = time.perf_counter()
    for header, pixels, labels in read_shards(args.directory, verify=args.verify):
        batches += 1
        samples += int(header["n"])
        if args.bench:
            pixels.astype(np.float32) / 255.0
        else:
            pixel_sum += int(pixels.sum(dtype=np.uint64))
            age_sum += float(labels["age"].astype(np.float64).sum())
    seconds = time.perf_counter() - started
    result = {"batches": batches, "samples": samples, "epochs": sorted({e for s in manifest["shards"] for e in s["epochs"]})}
    if not args.bench:
        result.update(pixel_sum=pixel_sum, age_sum=age_sum)
    if args.verify:
        result.update(crc_checked=batches, crc_implementation=_crc32c_function()[1])
    result["patches_per_second"] = samples / max(seconds, 1e-9)
    if args.summary or args.bench:
        print(json.dumps(result))
    else:
        print(f"{args.directory}: {batches} batches, {samples} patches, {result['patches_per_second']:.0f} patches/s read")


if __name__ == "__main__":
    main()
