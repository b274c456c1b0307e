#!/usr/bin/env python3
"""A BoneStream consumer in Python: batches from the stream as numpy arrays, for PyTorch or anything else.

Role: binds PULL on the data endpoint (workers connect and push batches), connects DEALER to the
coordinator's control endpoint to grant credit and acknowledge batches. It needs only pyzmq and numpy
and follows docs/protocol.md, which it proves complete.

Usage:
  python3 tools/bonestream_client.py --control ipc://work/stream-control --data ipc://work/stream-data [--bench] [--rgb] [--uint8]
  (start it, then `bonestream produce`; or run `bonestream produce --workers 2` first: workers wait)

In a training script:
  stream = BoneStreamClient(control, data)
  for header, images, labels in stream:        # images: float32 in [0, 1], N x 1 x H x W (N x 3 x H x W with rgb=True)
      ...
  # or, as a PyTorch IterableDataset:  torch.utils.data.DataLoader(BoneStreamDataset(control, data), batch_size=None)
  # With as_float=False the images stay uint8 0-255, a quarter of the bytes to copy and to move to a GPU,
  # and about twice the batches a second here: convert there, images.to(device).float().div_(255).
"""
import argparse
import errno
import json
import os
import socket
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


FLAG_SHARED_PIXELS = 2
SLOT_REFERENCE = struct.Struct("<IIQQQQ")  # magic "BSHM", slot, file size, state offset, pixel offset, length; then the path
SLOT_MAGIC = 0x4D485342
SHARD_MAGIC = 0x46485342  # "BSHF": the pixels lie in a shard file a replay sends from (read-only, nothing to release)


class SharedSlots:
    """Maps producers' shared-memory slot files (docs/protocol.md) and hands slots back."""

    def __init__(self):
        self.maps, self.last_sweep = {}, time.monotonic()

    def pixels(self, frame):
        """(uint8 view of the slot's pixels, release token) for a slot-reference frame."""
        if len(frame) <= SLOT_REFERENCE.size:
            raise ValueError("slot reference frame too short")
        magic, _slot, size, state, offset, length = SLOT_REFERENCE.unpack_from(frame)
        path = bytes(frame[SLOT_REFERENCE.size:]).decode()
        shard = magic == SHARD_MAGIC
        if shard:
            if not path.startswith("/") or not path.endswith(".bss"):
                raise ValueError(f"not a BoneStream shard reference: {path!r}")
        elif magic != SLOT_MAGIC or not path.startswith("/dev/shm/bonestream-") or "/../" in path:
            raise ValueError(f"not a BoneStream slot reference: {path!r}")
        self._sweep()
        mm = self.maps.get(path)
        if mm is None or len(mm) != size:
            if os.path.getsize(path) != size:
                raise ValueError(f"{path} is not {size} bytes")
            mm = self.maps[path] = np.memmap(path, np.uint8, "r" if shard else "r+")
            if shard and bytes(mm[:8]) != b"BSSHARD1":
                raise ValueError(f"{path} is not a BoneStream shard")
        if shard:
            if offset + length > size:
                raise ValueError(f"shard reference outside {path}")
            return mm[offset:offset + length], None
        if state % 8 or state + 16 > size or offset + length > size:
            raise ValueError(f"slot reference outside {path}")
        return mm[offset:offset + length], (mm, state)

    @staticmethod
    def release(token):
        mm, state = token
        mm[state:state + 4].view(np.uint32)[0] = 0  # an aligned 4-byte store: the producer may reuse the slot

    def _sweep(self):  # forget files whose producers left
        if time.monotonic() - self.last_sweep > 2:
            self.last_sweep = time.monotonic()
            for path in [p for p in self.maps if not os.path.exists(p)]:
                del self.maps[path]


def decode(frames, rgb=False, as_float=True, slots=None):
    """(header, images, labels) from the three frames of a batch; raises ValueError on a bad message.

    Pixels travel inline (frame 1) or, with header flag bit 1, in a shared-memory slot that frame 1
    references; then they are copied out (converted) and the slot is handed back at once."""
    if len(frames) != 3 or len(frames[0]) != 64:
        raise ValueError("not a BoneStream batch: expected 3 frames, a 64-byte header first")
    header = np.frombuffer(frames[0], HEADER)[0]
    if header["magic"] != MAGIC or header["version"] != 1:
        raise ValueError("bad magic or version")
    n, h, w = int(header["n"]), int(header["height"]), int(header["width"])
    if len(frames[2]) != n * LABEL.itemsize:
        raise ValueError("label frame disagrees with the header")
    token = None
    if int(header["flags"]) & FLAG_SHARED_PIXELS:
        raw, token = (slots or SharedSlots()).pixels(frames[1])
    else:
        raw = np.frombuffer(frames[1], np.uint8)
    try:
        if raw.size != n * h * w:
            raise ValueError("pixel bytes disagree with the header")
        pixels = raw.reshape(n, 1, h, w)
        if as_float:
            images = pixels.astype(np.float32)
            images *= np.float32(1.0 / 255.0)  # in place: one array, not two
        else:
            images = np.array(pixels) if token else pixels
    finally:
        if token:
            SharedSlots.release(token)
    if rgb:
        images = np.repeat(images, 3, axis=1)
    return header, images, np.frombuffer(frames[2], LABEL).copy()


WILDCARD_HOSTS = {"*", "0.0.0.0", "::", "::0"}


def _tcp_host_port(endpoint):
    """(host, port) of a tcp:// endpoint (an IPv6 host without brackets), else None."""
    if not endpoint.startswith("tcp://") or ";" in endpoint:
        return None
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host, port) if host else None


def _tcp(host, port):
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def connectable(endpoint):
    """docs/protocol.md, Transport: a wildcard host (as the binding side writes it) means this host."""
    parts = _tcp_host_port(endpoint)
    if parts and parts[0] in WILDCARD_HOSTS:
        return _tcp("::1" if ":" in parts[0] else "127.0.0.1", parts[1])
    return endpoint


def bind(sock, endpoint):
    """Binds; a tcp:// host name binds the first address it resolves to (libzmq binds addresses only)."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as error:
        parts = _tcp_host_port(endpoint)
        if error.errno != errno.ENODEV or not parts or parts[0] in WILDCARD_HOSTS:
            raise
        address = socket.getaddrinfo(parts[0], None, type=socket.SOCK_STREAM)[0][4][0]
        sock.bind(_tcp(address, parts[1]))


class BoneStreamClient:
    """Iterates over batches until the coordinator ends the stream; duplicates are dropped."""

    def __init__(self, control, data, credit=32, rgb=False, as_float=True):
        self.context = zmq.Context.instance()
        self.data = self.context.socket(zmq.PULL)
        bind(self.data, data)
        self.control = self.context.socket(zmq.DEALER)
        self.control.setsockopt(zmq.IDENTITY, f"python-{os.getpid()}".encode())
        self.control.connect(connectable(control))
        self.control.send_multipart([b"CREDIT", struct.pack("<I", credit)])
        self.rgb, self.as_float, self.credit = rgb, as_float, credit
        self.seen = set()
        self.malformed = 0
        self.slots = SharedSlots()

    def __iter__(self):
        poller = zmq.Poller()
        poller.register(self.data, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        ended = False
        # Acknowledgements as the sink sends them (docs/protocol.md): several ids to an ACK, once half
        # the credit waits or 10 ms after the last ACK went. A consumer slow per batch thus still
        # acknowledges each before working on it.
        every, delay = max(1, self.credit // 2), 0.010
        pending, last_ack = [], time.monotonic()

        def acknowledge():  # each id also returns one credit
            nonlocal last_ack
            if pending:
                self.control.send_multipart([b"ACK"] + pending)
                pending.clear()
            last_ack = time.monotonic()

        while True:
            due = delay - (time.monotonic() - last_ack)
            if pending and due <= 0:
                acknowledge()
                due = delay
            events = dict(poller.poll(max(1, int(due * 1000 + 1)) if pending else 100))
            if self.control in events:
                if self.control.recv_multipart()[0] == b"END":
                    ended = True
            if self.data in events:
                frames = self.data.recv_multipart(copy=False)
                try:
                    header, images, labels = decode([f.buffer for f in frames], self.rgb, self.as_float, self.slots)
                except (ValueError, OSError):  # not acknowledged: the coordinator hands it out again
                    self.malformed += 1
                    continue
                key = (int(header["kind"]), int(header["epoch"]), int(header["batch"]))
                pending.append(struct.pack("<BxxxII", *key))
                if len(pending) >= every or time.monotonic() - last_ack >= delay:
                    acknowledge()
                if key in self.seen:
                    continue
                self.seen.add(key)
                yield header, images, labels
            elif ended:
                acknowledge()
                return


try:
    import torch

    class BoneStreamDataset(torch.utils.data.IterableDataset):
        """The stream as a PyTorch dataset of ready batches: use DataLoader(..., batch_size=None)."""

        def __init__(self, control, data, rgb=False, as_float=True):
            super().__init__()
            self.control, self.data, self.rgb, self.as_float = control, data, rgb, as_float

        def __iter__(self):
            for header, images, labels in BoneStreamClient(self.control, self.data, rgb=self.rgb, as_float=self.as_float):
                yield (torch.from_numpy(images), torch.from_numpy(labels["male"].astype(np.float32)),
                       torch.from_numpy(labels["age"].copy()))
except ImportError:  # PyTorch is optional
    pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", default="ipc://work/stream-control")
    parser.add_argument("--data", default="ipc://work/stream-data")
    parser.add_argument("--credit", type=int, default=32)
    parser.add_argument("--rgb", action="store_true", help="replicate gray into 3 channels")
    parser.add_argument("--uint8", action="store_true", help="pixels as uint8 0-255, not float32 (convert on the GPU)")
    parser.add_argument("--bench", action="store_true", help="print patches/s at the end")
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    args = parser.parse_args()
    client = BoneStreamClient(args.control, args.data, args.credit, args.rgb, as_float=not args.uint8)
    patches = batches = 0
    start = None
    for header, images, labels in client:
        start = start or time.perf_counter()
        batches += 1
        patches += images.shape[0]
    seconds = time.perf_counter() - start if start else 0.0
    if args.json:
        print(json.dumps({"batches": batches, "patches": patches, "malformed": client.malformed,
                          "patches_per_s": patches / seconds if seconds > 0 else 0.0}))
        return
    line = f"python client: {batches} batches, {patches} patches, {client.malformed} malformed dropped"
    if args.bench and seconds > 0:
        line += f", {patches / seconds:.0f} patches/s" + (" (uint8, copied out)" if args.uint8 else " (float32 conversion included)")
    print(line)


if __name__ == "__main__":
    main()
