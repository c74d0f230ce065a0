#!/usr/bin/env python3
"""gen.py - write the tf.train.Example test files of t/data/example with
TensorFlow itself, and what TensorFlow's parser makes of every record.

    python3 t/data/example/gen.py [OUTDIR]      (needs tensorflow, numpy)

Files (small, committed so that the tests need no TensorFlow):
  basic.tfrecord   Examples written by tf.train.Example, plus hand-made
                   serializations TensorFlow also accepts (unpacked repeated
                   values, a key given twice, the features message split in
                   two, unknown fields)
  errors.tfrecord  Examples tf.io.parse_single_example rejects with SPEC
  fmnist.tfrecord  the first 32 Fashion-MNIST test images as PNG (and JPEG)
                   with their label, when /usr/share/datasets/fashion-mnist
                   is there
  *.expect         per record: "R N ok" then "F NAME COUNT VALUES..." per
                   feature of SPEC as TensorFlow parsed it (bytes in hex,
                   floats %.9g), or "R N error MESSAGE"; fmnist.expect has
                   "P N LABEL HEX" rows: the pixels tf.io.decode_png gives,
                   "J N HEX" tf.io.decode_jpeg's (its default DCT), "A N HEX"
                   decode_jpeg(dct_method="INTEGER_ACCURATE")'s, "S N SIZE V..."
                   tf.image.resize's (bilinear) of the PNG to SIZE x SIZE.

SPEC (the parse_example spec the C tests use, the same features):
  image=bytes, label=i64(default=-1), bbox=f32[?], mask=f32[2,2](default=0),
  ids=i64[?], cls=i64(key="image/class")
"""
import gzip
import os
import struct
import sys

import numpy as np
import tensorflow as tf

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

SPEC = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "bbox": tf.io.VarLenFeature(tf.float32),
    "mask": tf.io.FixedLenFeature([2, 2], tf.float32, default_value=[[0.0, 0.0], [0.0, 0.0]]),
    "ids": tf.io.VarLenFeature(tf.int64),
    "image/class": tf.io.FixedLenFeature([], tf.int64),
}
FIELD = {"image/class": "cls"}  # feature key -> pipefeed field name


def b(*v):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(v)))


def i(*v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))


def f(*v):
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(v)))


def ex(**feats):
    feats = {k.replace("__", "/"): v for k, v in feats.items()}
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


# ---- hand-made protobuf wire bytes ----------------------------------------
def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        c = n & 0x7F
        n >>= 7
        if n:
            out += bytes([c | 0x80])
        else:
            return out + bytes([c])


def ld(field, payload):  # a length-delimited field
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def entry(key, feature):  # one Features.feature map entry
    return ld(1, ld(1, key.encode()) + ld(2, feature))


def raw_example(*entries, extra=b""):
    return ld(1, b"".join(entries)) + extra


def unpacked_floats(*v):
    return ld(2, b"".join(varint(1 << 3 | 5) + struct.pack("<f", x) for x in v))


def unpacked_ints(*v):
    return ld(3, b"".join(varint(1 << 3 | 0) + varint(x) for x in v))


def packed_ints(*v):
    return ld(3, ld(1, b"".join(varint(x) for x in v)))


def bytes_feat(*v):
    return ld(1, b"".join(ld(1, x) for x in v))


def basic_records():
    m = [1.0, 2.0, 3.0, 4.0]
    recs = [
        ex(image=b(b"\x00\x01\x02abc"), label=i(7), bbox=f(0.1, 0.2, 0.9, 0.8),
           mask=f(*m), ids=i(1, -2, 3), image__class=i(3)),
        ex(image=b(b""), label=i(-5), bbox=f(), mask=f(*m), ids=i(), image__class=i(0)),
        ex(image=b(b"x" * 300), image__class=i(2 ** 62), mask=f(0.5, -0.5, 1e-30, 3.4e38)),
        ex(image=b(b"no label"), bbox=f(1.5), image__class=i(-(2 ** 63)),
           unused=b(b"ignored", b"twice"), other=f(1, 2)),
        ex(image=b(bytes(range(256))), label=i(2 ** 63 - 1), ids=i(*range(40)), image__class=i(9)),
        # an empty Feature (no list set) counts as missing: the default
        ex(image=b(b"empty"), label=tf.train.Feature(), ids=tf.train.Feature(), image__class=i(5)),
        # hand-made: unpacked repeated values, TensorFlow reads them too
        raw_example(entry("image", bytes_feat(b"unpacked")),
                    entry("bbox", unpacked_floats(1.0, -2.5, 3.25)),
                    entry("ids", unpacked_ints(5, 2 ** 64 - 1, 0)),
                    entry("image/class", packed_ints(4))),
        # a key given twice: the last entry wins (map semantics)
        raw_example(entry("image", bytes_feat(b"first")), entry("label", packed_ints(1)),
                    entry("image", bytes_feat(b"second")), entry("image/class", packed_ints(1))),
        # the features message twice: the two are merged; unknown fields
        # in Example (field 7, varint) and at the end
        ld(1, entry("image", bytes_feat(b"split")))
        + varint(7 << 3 | 0) + varint(12345)
        + ld(1, entry("image/class", packed_ints(8)) + entry("label", packed_ints(3)))
        + varint(9 << 3 | 5) + b"\x01\x02\x03\x04",
    ]
    return recs


def error_records():
    m = [1.0, 2.0, 3.0, 4.0]
    good = dict(image=b(b"ok"), image__class=i(1))
    return [
        ("wrong type", ex(image=b(b"a"), label=f(1.0), image__class=i(1))),
        ("missing required", ex(label=i(1), image__class=i(1))),
        ("wrong count", ex(mask=f(1.0, 2.0, 3.0), **good)),
        ("bytes list of two", ex(image=b(b"a", b"b"), image__class=i(1))),
        ("truncated", ex(mask=f(*m), **good)[:-3]),
        ("bad wire type", ex(**good) + bytes([1 << 3 | 7])),
        ("varlen wrong type", ex(ids=f(1.0), **good)),
        ("not a protobuf", b"\xff\xff\xff\xff"),
    ]


def fmt_value(dtype, arr):
    a = np.asarray(arr).reshape(-1)
    if dtype == tf.string:
        return [x.hex() if x else "-" for x in a]
    if dtype == tf.float32:
        return ["%.9g" % x for x in a]
    return [str(int(x)) for x in a]


def parse_lines(n, rec):
    try:
        out = tf.io.parse_single_example(rec, SPEC)
    except UnicodeDecodeError:  # TensorFlow's message quotes the bad bytes
        return ["R %d error Could not parse example input" % n]
    except tf.errors.InvalidArgumentError as e:
        msg = e.message.split("}} ")[-1].splitlines()[0] if e.message else "error"
        msg = msg.encode("ascii", "backslashreplace").decode()[:160]
        return ["R %d error %s" % (n, msg)]
    lines = ["R %d ok" % n]
    for key, spec in SPEC.items():
        v = out[key]
        if isinstance(v, tf.SparseTensor):
            v = v.values
        vals = fmt_value(spec.dtype, v.numpy())
        lines.append(("F %s %d %s" % (FIELD.get(key, key), len(vals), " ".join(vals))).rstrip())
    return lines


def write(name, recs):
    with tf.io.TFRecordWriter(os.path.join(OUT, name + ".tfrecord")) as w:
        for r in recs:
            w.write(r)
    with open(os.path.join(OUT, name + ".expect"), "w") as e:
        e.write("# written by gen.py from tf.io.parse_single_example (TensorFlow %s)\n"
                % tf.__version__)
        for n, r in enumerate(recs):
            e.write("\n".join(parse_lines(n, r)) + "\n")


def idx(path):
    with gzip.open(path) as fh:
        data = fh.read()
    magic, = struct.unpack(">I", data[:4])
    nd = magic & 0xFF
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * nd).reshape(dims)


def fmnist(n=32):
    d = "/usr/share/datasets/fashion-mnist"
    if not os.path.isdir(d):
        print("gen.py: no %s: fmnist.tfrecord not written" % d)
        return
    img = idx(d + "/t10k-images-idx3-ubyte.gz")[:n]
    lab = idx(d + "/t10k-labels-idx1-ubyte.gz")[:n]
    recs, rows = [], []
    for k in range(n):
        px = img[k].reshape(28, 28, 1)
        png = tf.io.encode_png(px).numpy()
        jpg = tf.io.encode_jpeg(px, quality=90).numpy()
        recs.append(ex(image=b(png), jpeg=b(jpg), label=i(int(lab[k]))))
        dec = tf.io.decode_png(png).numpy().reshape(-1)
        djp = tf.io.decode_jpeg(jpg).numpy().reshape(-1)
        rows.append("P %d %d %s" % (k, int(lab[k]), dec.tobytes().hex()))
        rows.append("J %d %s" % (k, djp.tobytes().hex()))
        dja = tf.io.decode_jpeg(jpg, dct_method="INTEGER_ACCURATE").numpy().reshape(-1)
        rows.append("A %d %s" % (k, dja.tobytes().hex()))
        if k < 4:  # tf.image.resize (bilinear, half-pixel centers) to 14x14 and 40x40
            for s in (14, 40):
                r = tf.image.resize(tf.io.decode_png(png), [s, s]).numpy().reshape(-1)
                rows.append("S %d %d %s" % (k, s, " ".join("%.9g" % v for v in r)))
    with tf.io.TFRecordWriter(os.path.join(OUT, "fmnist.tfrecord")) as w:
        for r in recs:
            w.write(r)
    with open(os.path.join(OUT, "fmnist.expect"), "w") as e:
        e.write("# written by gen.py: P N LABEL PIXELS (tf.io.decode_png), "
                "J N PIXELS (tf.io.decode_jpeg), TensorFlow %s\n" % tf.__version__)
        e.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    write("basic", basic_records())
    errs = error_records()
    write("errors", [r for _, r in errs])
    fmnist()
    print("gen.py: wrote", OUT)
