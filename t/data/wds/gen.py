#!/usr/bin/env python3
"""gen.py - write the WebDataset test shards of t/data/wds with the
`webdataset` package itself (its TarWriter and its encoders), and what each
sample holds.

    python3 t/data/wds/gen.py [OUTDIR]      (needs webdataset, numpy, pillow)

Files (small, committed so that the tests need neither):
  shards-000.tar .. shards-003.tar   5, 0, 12 and 1 samples: Fashion-MNIST
        test images 0..17 as "png" (webdataset's PNG encoder of a 28x28 u8
        array), their label as "cls" (its text encoding), the key as "txt",
        and for every third sample a "json" member; shards-002 is written
        gzip'd as shards-002.tar.gz too
  expect  per sample, in file order: "S FILE INDEX KEY", then
        "F FIELD HEX" per member (the bytes in the tar), and
        "P HEX": the 784 pixels the PNG holds
"""
import gzip
import io
import json
import os
import struct
import sys

import numpy as np
import webdataset as wds

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
SIZES = [5, 0, 12, 1]


def idx(path):
    with gzip.open(path) as fh:
        data = fh.read()
    nd = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * nd).reshape(dims)


def main():
    d = "/usr/share/datasets/fashion-mnist"
    img = idx(d + "/t10k-images-idx3-ubyte.gz")
    lab = idx(d + "/t10k-labels-idx1-ubyte.gz")
    k = 0
    rows = ["# written by gen.py with webdataset %s" % getattr(wds, "__version__", "?")]
    for s, n in enumerate(SIZES):
        name = "shards-%03d.tar" % s
        with wds.TarWriter(os.path.join(OUT, name)) as w:
            for i in range(n):
                sample = {"__key__": "sample%06d" % k, "png": img[k], "cls": int(lab[k]),
                          "txt": "sample%06d" % k}
                if k % 3 == 0:
                    sample["json"] = {"index": k, "label": int(lab[k])}
                w.write(sample)
                k += 1
        # what the tar holds, read back member by member
        import tarfile
        with tarfile.open(os.path.join(OUT, name)) as t:
            members = [(m.name, t.extractfile(m).read()) for m in t.getmembers() if m.isfile()]
        cur, i = None, -1
        for mname, data in members:
            key, ext = mname.split(".", 1)
            if key != cur:
                cur, i = key, i + 1
                rows.append("S %s %d %s" % (name, i, key))
            rows.append("F %s %s" % (ext, data.hex() if data else "-"))
            if ext == "png":
                rows.append("P %s" % img[int(key[6:])].tobytes().hex())
        if s == 2:
            with open(os.path.join(OUT, name), "rb") as f, \
                    gzip.GzipFile(os.path.join(OUT, name + ".gz"), "wb", mtime=0) as g:
                g.write(f.read())
    with open(os.path.join(OUT, "expect"), "w") as f:
        f.write("\n".join(rows) + "\n")
    print("gen.py: wrote", OUT)


if __name__ == "__main__":
    main()
