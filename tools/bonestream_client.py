#!/usr/bin/env python3
"""A BoneStream consumer in Python: batches from the stream as numpy arrays, for PyTorch or anything else.

Role: binds PULL on the data endpoint (workers connect and push batches), connects DEALER to the
coordinator's control endpoint to grant credit and acknowledge batches. It needs only pyzmq and numpy
and follows docs/protocol.md, which it proves complete.

Usage:
  python3 tools/bonestream_client.py --control ipc://work/stream-control --data ipc://work/stream-data [--bench] [--rgb]
  (start it, then `bonestream produce`; or run `bonestream produce --workers 2` first: workers wait)

In a training script:
  stream = BoneStreamClient(control, data)
  for header, images, labels in stream:        # images: float32 in [0, 1], N x 1 x H x W (N x 3 x H x W with rgb=True)
      ...
  # or, as a PyTorch IterableDataset:  torch.utils.data.DataLoader(BoneStreamDataset(control, data), batch_size=None)
"""
import argparse
import os
import struct
import time

import numpy as np
import zmq

MAGIC = 0x4D545342
HEADER = np.dtype([("magic", "<u4"), ("version", "<u2"), ("kind", "u1"), ("dtype", "u1"), ("flags", "<u2"),
                   ("reserved", "<u2"), ("epoch", "<u4"), ("batch", "<u4"), ("batches", "<u4"), ("n", "<u4"),
                   ("height", "<u2"), ("width", "<u2"), ("seed", "<u8"), ("config_hash", "u1", 16), ("pad", "u1", 8)])
LABEL = np.dtype([("image", "<u4"), ("patch", "u1"), ("operation", "u1"), ("male", "u1"), ("reserved", "u1"),
                  ("age", "<f4"), ("parameter", "<f4")])
assert HEADER.itemsize == 64 and LABEL.itemsize == 16


def decode(frames, rgb=False, as_float=True):
    """(header, images, labels) from the three frames of a batch; raises ValueError on a bad message."""
    if len(frames) != 3 or len(frames[0]) != 64:
        raise ValueError("not a BoneStream batch: expected 3 frames, a 64-byte header first")
    header = np.frombuffer(frames[0], HEADER)[0]
    if header["magic"] != MAGIC or header["version"] != 1:
        raise ValueError("bad magic or version")
    n, h, w = int(header["n"]), int(header["height"]), int(header["width"])
    if len(frames[1]) != n * h * w or len(frames[2]) != n * LABEL.itemsize:
        raise ValueError("frame sizes disagree with the header")
    pixels = np.frombuffer(frames[1], np.uint8).reshape(n, 1, h, w)
    images = pixels.astype(np.float32) * (1.0 / 255.0) if as_float else pixels
    if rgb:
        images = np.repeat(images, 3, axis=1)
    return header, images, np.frombuffer(frames[2], LABEL)


class BoneStreamClient:
    """Iterates over batches until the coordinator ends the stream; duplicates are dropped."""

    def __init__(self, control, data, credit=16, rgb=False, as_float=True):
        self.context = zmq.Context.instance()
        self.data = self.context.socket(zmq.PULL)
        self.data.bind(data)
        self.control = self.context.socket(zmq.DEALER)
        self.control.setsockopt(zmq.IDENTITY, f"python-{os.getpid()}".encode())
        self.control.connect(control)
        self.control.send_multipart([b"CREDIT", struct.pack("<I", credit)])
        self.rgb, self.as_float = rgb, as_float
        self.seen = set()
        self.malformed = 0

    def __iter__(self):
        poller = zmq.Poller()
        poller.register(self.data, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        ended = False
        while True:
            events = dict(poller.poll(100))
            if self.control in events:
                if self.control.recv_multipart()[0] == b"END":
                    ended = True
            if self.data in events:
                frames = self.data.recv_multipart(copy=False)
                try:
                    header, images, labels = decode([f.buffer for f in frames], self.rgb, self.as_float)
                except ValueError:
                    self.malformed += 1
                    continue
                key = (int(header["kind"]), int(header["epoch"]), int(header["batch"]))
                batch_id = struct.pack("<BxxxII", *key)
                self.control.send_multipart([b"ACK", batch_id])  # also returns one credit
                if key in self.seen:
                    continue
                self.seen.add(key)
                yield header, images, labels
            elif ended:
                return


try:
    import torch

    class BoneStreamDataset(torch.utils.data.IterableDataset):
        """The stream as a PyTorch dataset of ready batches: use DataLoader(..., batch_size=None)."""

        def __init__(self, control, data, rgb=False):
            super().__init__()
            self.control, self.data, self.rgb = control, data, rgb

        def __iter__(self):
            for header, images, labels in BoneStreamClient(self.control, self.data, rgb=self.rgb):
                yield (torch.from_numpy(images), torch.from_numpy(labels["male"].astype(np.float32)),
                       torch.from_numpy(labels["age"].copy()))
except ImportError:  # PyTorch is optional
    pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", default="ipc://work/stream-control")
    parser.add_argument("--data", default="ipc://work/stream-data")
    parser.add_argument("--credit", type=int, default=16)
    parser.add_argument("--rgb", action="store_true", help="replicate gray into 3 channels")
    parser.add_argument("--bench", action="store_true", help="print patches/s at the end")
    args = parser.parse_args()
    client = BoneStreamClient(args.control, args.data, args.credit, args.rgb)
    patches = batches = 0
    start = None
    for header, images, labels in client:
        start = start or time.perf_counter()
        batches += 1
        patches += images.shape[0]
    seconds = time.perf_counter() - start if start else 0.0
    line = f"python client: {batches} batches, {patches} patches, {client.malformed} malformed dropped"
    if args.bench and seconds > 0:
        line += f", {patches / seconds:.0f} patches/s (float32 conversion included)"
    print(line)


if __name__ == "__main__":
    main()
