#!/usr/bin/env python3
"""Writes the end-to-end fixture icons container/e2e-marker-<N>.png (N = 32, 48): N x N RGBA
PNGs, a blue square with a white diagonal, so GetIcon's answer can be decoded and its size
checked. Standard library only; the output is committed, rerun only to change the icons."""
import os
import struct
import zlib


def png(size):
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter type None
        for x in range(size):
            row += bytes([255, 255, 255, 255]) if abs(x - y) <= 1 else bytes([30, 90, 200, 255])
        rows.append(bytes(row))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


here = os.path.dirname(os.path.abspath(__file__))
for n in (32, 48):
    with open(os.path.join(here, "container", f"e2e-marker-{n}.png"), "wb") as f:
        f.write(png(n))
