#!/usr/bin/env python3
"""formats_bench.py - the same Fashion-MNIST images through pipefeed from
pfs shards, TFRecord+tf.train.Example(PNG) and WebDataset tars (PNG), and
through tf.data's own parse_single_example + decode_png on the same
TFRecords, in one run.

    python3 bench/formats_bench.py [--n N] [--runs R] [--dir DIR] [--builddir B] [--no-tf]

Needs tensorflow, webdataset, numpy and pillow (for the comparison and to
write the files; pipefeed itself needs none of them), Fashion-MNIST in
/usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist), and
`make bench` done (bench/formats_bench, ./pipe-pack).

Data (made once in DIR, default /tmp/pf-formats-bench): the first N
training images (default 60000), each PNG-encoded once (pillow, zlib level
6), the same bytes in 8 TFRecord files of Examples {image, label} and in 8
WebDataset tars {png, cls}; pfs shards of the raw pixels (pipe-pack idx).
Every pipeline yields f32 images in [0,1] in batches of 256, using every
core (map par=auto / num_parallel_calls=AUTOTUNE).  Figures: median
images/s of R epochs (default 5), and the ratios.  The PNG goal's baseline
is libpng's simplified API on one thread x cores, measured in every run
(median of the per-run ratios); libpng on every core at once is printed
beside it: what the machine gives.  --no-tf leaves tf.data out (no
TensorFlow needed once the data is made).
"""
import argparse
import gzip
import io
import os
import struct
import subprocess
import sys
import time

import numpy as np


def idx(path):
    with gzip.open(path) as fh:
        data = fh.read()
    nd = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * nd).reshape(dims)


def make_data(d, n, b):
    stamp = os.path.join(d, "made-%d" % n)
    if os.path.exists(stamp):  # made before: the writers are not needed
        return
    import tensorflow as tf
    import webdataset as wds
    from PIL import Image
    src = "/usr/share/datasets/fashion-mnist"
    os.makedirs(d, exist_ok=True)
    img = idx(src + "/train-images-idx3-ubyte.gz")[:n]
    lab = idx(src + "/train-labels-idx1-ubyte.gz")[:n]
    pngs = []
    for k in range(n):
        buf = io.BytesIO()
        Image.fromarray(img[k]).save(buf, format="PNG", compress_level=6)
        pngs.append(buf.getvalue())
    per = (n + 7) // 8
    for s in range(8):
        with tf.io.TFRecordWriter(os.path.join(d, "tfr-%03d.tfrecord" % s)) as w:
            for k in range(s * per, min(n, (s + 1) * per)):
                f = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[pngs[k]])),
                     "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(lab[k])]))}
                w.write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
        with wds.TarWriter(os.path.join(d, "wds-%03d.tar" % s)) as w:
            for k in range(s * per, min(n, (s + 1) * per)):
                w.write({"__key__": "%06d" % k, "png": pngs[k], "cls": str(int(lab[k])).encode()})
    # the raw pixels as pfs shards: an IDX file of the first n, then pipe-pack idx
    with open(os.path.join(d, "img.idx"), "wb") as f:
        f.write(struct.pack(">IIII", 0x0803, n, 28, 28) + img.tobytes())
    with open(os.path.join(d, "lab.idx"), "wb") as f:
        f.write(struct.pack(">II", 0x0801, n) + lab.tobytes())
    subprocess.run([os.path.join(b, "pipe-pack"), "idx", "-q", "--images", os.path.join(d, "img.idx"),
                    "--labels", os.path.join(d, "lab.idx"), "-o", os.path.join(d, "pfs"),
                    "--shards", "8"], check=True)
    open(stamp, "w").close()


def tf_rate(d, runs):
    import tensorflow as tf
    files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".tfrecord"))
    spec = {"image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(x):
        f = tf.io.parse_single_example(x, spec)
        im = tf.cast(tf.io.decode_png(f["image"], channels=1), tf.float32) / 255.0
        return im, f["label"]

    ds = (tf.data.TFRecordDataset(files, num_parallel_reads=8)
          .map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(256)
          .prefetch(tf.data.AUTOTUNE))
    rates, us = [], []
    for _ in range(runs):
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for im, _ in ds:
            n += int(im.shape[0])
        rates.append(n / (time.perf_counter() - t0))
        us.append((time.process_time() - c0) / n * 1e6)
    return sorted(rates)[len(rates) // 2], n, sorted(us)[len(us) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default="/tmp/pf-formats-bench")
    ap.add_argument("--builddir", default=".")
    ap.add_argument("--no-tf", action="store_true")
    a = ap.parse_args()
    d, b = a.dir, a.builddir
    make_data(d, a.n, b)
    tfr = ", ".join('"%s/tfr-%03d.tfrecord"' % (d, s) for s in range(8))
    f32 = "size=[28, 28], channels=1, dtype=f32"
    specs = [
        "pfs=shards(\"%s/pfs-*.pfs\", cycle=8, reads=auto) | map(decode_f32, par=auto) | batch(256)" % d,
        "tfrecord=tfrecord([%s], cycle=8) | map(parse_example(image=bytes, label=i64, max_bytes=65536), par=auto) "
        "| map(decode_image(%s), par=auto) | batch(256)" % (tfr, f32),
        "wds=webdataset(\"%s/wds-{000..007}.tar\", cycle=8) | map(decode_image(field=png, %s), par=auto) "
        "| padded_batch(256, max_len=8)" % (d, f32),
        "tfrecord-1=tfrecord([%s], cycle=8) | map(parse_example(image=bytes, label=i64, max_bytes=65536)) "
        "| map(decode_image(%s)) | batch(256)" % (tfr, f32),
        # parse_example (about 1 us) in decode_image's feeder thread: one
        # worker pool, not two, so half the hand-offs
        "one-pool=tfrecord([%s], cycle=8) | map(parse_example(image=bytes, label=i64, max_bytes=65536)) "
        "| map(decode_image(%s), par=auto) | batch(256)" % (tfr, f32),
    ]
    out = subprocess.run([os.path.join(b, "bench/formats_bench"), "-r", str(a.runs),
                          "--png", "%s/tfr-000.tfrecord" % d] + specs,
                         check=True, capture_output=True, text=True).stdout
    print(out, end="")
    rate = {l.split()[0]: float(l.split()[3]) for l in out.splitlines() if "images/s" in l}
    cpu = {l.split()[0]: float(l.split()[l.split().index("us") - 1])
           for l in out.splitlines() if "us CPU/image" in l}
    goal = {l.split()[0]: float(l.split()[l.split().index("of") - 1][1:])
            for l in out.splitlines() if "of 1T*cores" in l}
    cores = os.cpu_count()
    hw = "png-%dthreads" % cores
    if hw not in goal or any(k not in goal for k in ("tfrecord", "one-pool", "wds")):
        sys.exit("formats_bench: %s/bench/formats_bench printed no per-run goal ratios: an "
                 "older build? (make bench/formats_bench)" % b)
    if not a.no_tf:
        tf_r, n, tf_us = tf_rate(d, a.runs)
        print("%-12s %8d images  %10.0f images/s  %-19s %6.2f us CPU/image   tf.data "
              "parse_single_example + decode_png, num_parallel_calls=AUTOTUNE"
              % ("tf.data", n, tf_r, "", tf_us))
        print("pipefeed/tf.data on the Example files: x%.2f (tfrecord), x%.2f (wds), x%.2f (pfs) "
              "in images/s; x%.2f (tfrecord) in CPU per image"
              % (rate["tfrecord"] / tf_r, rate["wds"] / tf_r, rate["pfs"] / tf_r,
                 tf_us / cpu["tfrecord"]))
    print("libpng itself on %d threads at once: x%.2f of its one-thread rate x %d (what the "
          "machine gives now)" % (cores, goal[hw], cores))
    for k in ("tfrecord", "one-pool", "wds"):
        print("decode_image on %d cores (%s): x%.2f of libpng's one-thread rate x cores "
              "(goal 0.8; median of per-run ratios; %.0f images/s vs libpng %.0f x %d); CPU "
              "per image %.2f us in the pipeline vs %.2f us for libpng alone (x%.2f)"
              % (cores, k, goal[k], rate[k], rate["png-1thread"], cores, cpu[k],
                 cpu["png-1thread"], cpu["png-1thread"] / cpu[k]))


if __name__ == "__main__":
    sys.exit(main())
