#!/usr/bin/env python3
"""mkcorpus_png.py - write fuzz/corpus/png/: PNGs of every color type and
bit depth, interlaced or not, every row filter, with and without the
chunks libpng acts on (tRNS, gAMA, sRGB, sBIT, bKGD, cHRM, a suggested
PLTE), split IDATs, small zlib windows, trailing bytes: the seeds of
fuzz_png, which checks that decode_image's fast path and libspng give
libpng's pixels (or leave the file to libpng).  Pure Python (zlib,
struct); deterministic.  Each file is one byte (bit 0: output channels 1
or 3) then the PNG.

    python3 fuzz/mkcorpus_png.py fuzz/corpus/png
"""
import os
import random
import struct
import sys
import zlib


def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def filt(ft, row, prev, bpp):
    out = bytearray()
    for x, v in enumerate(row):
        a = row[x - bpp] if x >= bpp else 0
        b = prev[x] if prev else 0
        c = prev[x - bpp] if prev and x >= bpp else 0
        if ft == 0:
            p = 0
        elif ft == 1:
            p = a
        elif ft == 2:
            p = b
        elif ft == 3:
            p = (a + b) >> 1
        else:
            pp = a + b - c
            pa, pb, pc = abs(pp - a), abs(pp - b), abs(pp - c)
            p = a if pa <= pb and pa <= pc else b if pb <= pc else c
        out.append((v - p) & 0xFF)
    return bytes([ft]) + bytes(out)


CH = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def pack_row(samples, depth):
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    out, acc, nb = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | s
        nb += depth
        if nb == 8:
            out.append(acc)
            acc, nb = 0, 0
    if nb:
        out.append(acc << (8 - nb))
    return bytes(out)


def raw_rows(pix, w, h, ct, depth, rng):
    """pix[y][x] = tuple of samples; -> filtered scanlines (one pass)."""
    bpp = max(1, CH[ct] * depth // 8)
    out, prev = bytearray(), None
    for y in range(h):
        row = pack_row([s for x in range(w) for s in pix[y][x]], depth)
        out += filt(rng.randrange(5), row, prev, bpp)
        prev = row
    return bytes(out)


def png(w, h, ct, depth, rng, interlace=0, extra=(), level=6, wbits=15, split=0, tail=b"",
        after=()):
    mx = (1 << depth) - 1
    pal = 1 << depth if ct == 3 else 0
    pix = [[tuple(rng.randrange(pal if ct == 3 else mx + 1) for _ in range(CH[ct]))
            for _ in range(w)] for _ in range(h)]
    if interlace:
        data = b""
        for x0, y0, dx, dy in ADAM7:
            sub = [[pix[y][x] for x in range(x0, w, dx)] for y in range(y0, h, dy)]
            if sub and sub[0]:
                data += raw_rows(sub, len(sub[0]), len(sub), ct, depth, rng)
    else:
        data = raw_rows(pix, w, h, ct, depth, rng)
    co = zlib.compressobj(level, zlib.DEFLATED, wbits)
    z = co.compress(data) + co.flush()
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ct, 0, 0, interlace))
    for t, d in extra:
        out += chunk(t, d)
    if ct == 3:
        out += chunk(b"PLTE", bytes(rng.randrange(256) for _ in range(3 * pal)))
    if split:
        for i in range(0, len(z), split):
            out += chunk(b"IDAT", z[i:i + split])
    else:
        out += chunk(b"IDAT", z)
    for t, d in after:
        out += chunk(t, d)
    return out + chunk(b"IEND", b"") + tail


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/png"
    os.makedirs(d, exist_ok=True)
    rng = random.Random(18)
    files = {}
    depths = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
    for ct, ds in depths.items():
        for dp in ds:
            for il in (0, 1):
                files["ct%d-d%d-i%d" % (ct, dp, il)] = png(13, 9, ct, dp, rng, il)
    g8, rgb8 = (0, 8), (2, 8)
    plain = {
        "gray-28": (28, 28, g8, {}), "rgb-12x10": (12, 10, rgb8, {}), "gray-1x1": (1, 1, g8, {}),
        "rgb-1x7": (1, 7, rgb8, {}), "gray-split": (30, 20, g8, {"split": 17}),
        "rgb-split1": (9, 9, rgb8, {"split": 1}), "gray-level0": (20, 5, g8, {"level": 0}),
        "gray-level9": (40, 40, g8, {"level": 9}), "gray-wbits9": (16, 16, g8, {"wbits": 9}),
        "rgb-wbits10": (16, 16, rgb8, {"wbits": 10}),
        "gray-text": (10, 10, g8, {"extra": [(b"tEXt", b"Comment\0hello"), (b"pHYs", struct.pack(">IIB", 3780, 3780, 1))]}),
        "gray-gama-srgb": (10, 10, g8, {"extra": [(b"gAMA", struct.pack(">I", 45455))]}),
        "gray-gama-1": (10, 10, g8, {"extra": [(b"gAMA", struct.pack(">I", 100000))]}),
        "rgb-gama-04": (10, 10, rgb8, {"extra": [(b"gAMA", struct.pack(">I", 40000))]}),
        "rgb-srgb": (10, 10, rgb8, {"extra": [(b"sRGB", b"\0")]}),
        "gray-trns": (10, 10, g8, {"extra": [(b"tRNS", struct.pack(">H", 7))]}),
        "rgb-trns": (10, 10, rgb8, {"extra": [(b"tRNS", struct.pack(">HHH", 1, 2, 3))]}),
        "rgb-chrm": (10, 10, rgb8, {"extra": [(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000))]}),
        "rgb-sbit": (10, 10, rgb8, {"extra": [(b"sBIT", b"\5\6\5")]}),
        "gray-bkgd": (10, 10, g8, {"extra": [(b"bKGD", struct.pack(">H", 200))]}),
        "rgb-plte": (10, 10, rgb8, {"extra": [(b"PLTE", bytes(range(48)))]}),
        "gray-tail": (10, 10, g8, {"tail": b"trailing bytes after IEND"}),
        "gray-text-after": (10, 10, g8, {"after": [(b"tEXt", b"Late\0chunk")]}),
        "gray-priv": (10, 10, g8, {"extra": [(b"prVt", b"private ancillary")]}),
    }
    for name, (w, h, (ct, dp), kw) in plain.items():
        files[name] = png(w, h, ct, dp, rng, **kw)
    for name, data in sorted(files.items()):
        for c in (1, 3):
            with open(os.path.join(d, "%s-c%d" % (name, c)), "wb") as f:
                f.write(bytes([c >> 1]) + data)


if __name__ == "__main__":
    main()
