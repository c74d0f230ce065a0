#!/usr/bin/env python3
"""gen.py - write the tf.train.Example test files of t/data/example with
TensorFlow itself, and what TensorFlow's parser makes of every record.

    python3 t/data/example/gen.py [OUTDIR] [--only-new] [--only-fixstr]
                                                (needs tensorflow, numpy)

Files (small, committed so that the tests need no TensorFlow):
  basic.tfrecord   Examples written by tf.train.Example, plus hand-made
                   serializations TensorFlow also accepts (unpacked repeated
                   values, a key given twice, the features message split in
                   two, unknown fields)
  errors.tfrecord  Examples tf.io.parse_single_example rejects with SPEC
  lists.tfrecord   Examples with lists of byte strings (VarLenFeature(tf.string),
                   parse_example's bytes[?]), parsed with LIST_SPEC
  seq.tfrecord     tf.train.SequenceExample records (TensorFlow's and
                   hand-made serializations) parsed with
                   tf.io.parse_single_sequence_example(CTX_SPEC, SEQ_SPEC)
  seqerrors.tfrecord  SequenceExamples that parse rejects
  fixstr.tfrecord  Examples with fixed counts of byte strings
                   (FixedLenFeature([2] / [2, 2], tf.string), parse_example's
                   bytes[2] / bytes[2, 2]), parsed with FIXSTR_SPEC
                   (--only-fixstr writes this file alone)
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

lists.expect, fixstr.expect and seq*.expect have, per record, "R N ok" then one
"F NAME NITEMS VAR_LEN VALUES..." row per pipefeed output field (bytes as
one hex string of the strings joined, or "-"; a list of strings or a
ragged feature list also gives NAME_len, the length of each string or
frame), or "R N error MESSAGE".

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

_dirs = [a for a in sys.argv[1:] if not a.startswith("--")]
OUT = _dirs[0] if _dirs else os.path.dirname(os.path.abspath(__file__))

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


# ---- lists of byte strings and SequenceExample ------------------------------
# The pipefeed specs the C test (t1026) uses for these features:
#   lists.tfrecord: parse_example(tags=bytes[?], label=i64(default=-1),
#                                 name=bytes(default="none"))
#   seq*.tfrecord:  parse_sequence_example(length=i64(default=0), name=bytes,
#                     tags=bytes[?], frames=f32[?,2](seq), tokens=i64[?,?](seq),
#                     words=bytes[?](seq), opt=i64[?](seq, allow_missing=true))
LIST_SPEC = {
    "tags": tf.io.VarLenFeature(tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "name": tf.io.FixedLenFeature([], tf.string, default_value=b"none"),
}
CTX_SPEC = {
    "length": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "name": tf.io.FixedLenFeature([], tf.string),
    "tags": tf.io.VarLenFeature(tf.string),
}
SEQ_SPEC = {
    "frames": tf.io.FixedLenSequenceFeature([2], tf.float32),
    "tokens": tf.io.VarLenFeature(tf.int64),
    "words": tf.io.FixedLenSequenceFeature([], tf.string),
    "opt": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True),
}


# ---- fixed counts of byte strings --------------------------------------------
#   fixstr.tfrecord: parse_example(pair=bytes[2], grid=bytes[2, 2], label=i64(default=-1))
FIXSTR_SPEC = {
    "pair": tf.io.FixedLenFeature([2], tf.string),
    "grid": tf.io.FixedLenFeature([2, 2], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
}


def fixstr_records():
    g = b(b"a", b"", b"ccc", b"dd")
    return [
        ex(pair=b(b"x", b"yz"), grid=g, label=i(1)),
        ex(pair=b(b"", b""), grid=b(*[bytes([k]) * 3 for k in range(4)])),
        # a key given twice: the later entry wins
        raw_example(entry("pair", bytes_feat(b"p")), entry("pair", bytes_feat(b"q", b"r")),
                    entry("grid", bytes_feat(b"1", b"2", b"3", b"4"))),
        ex(pair=b(b"only one"), grid=g),   # too few strings
        ex(grid=g, label=i(3)),            # required, missing
        ex(pair=i(1, 2), grid=g),          # not a bytes_list
        ex(pair=b(b"a", b"b"), grid=b(b"1", b"2", b"3", b"4", b"5")),  # too many
    ]


def parse_fixstr(r):
    return out_rows(FIXSTR_SPEC, tf.io.parse_single_example(r, FIXSTR_SPEC))


def seqex(context=None, lists=None):
    se = tf.train.SequenceExample()
    for k, v in (context or {}).items():
        se.context.feature[k].CopyFrom(v)
    for k, frames in (lists or {}).items():
        fl = se.feature_lists.feature_list[k]
        fl.SetInParent()  # an empty list is a list with no frames
        for fr in frames:
            fl.feature.add().CopyFrom(fr)
    return se.SerializeToString()


def fl_entry(key, *frames):  # one FeatureLists.feature_list map entry
    return ld(1, ld(1, key.encode()) + ld(2, b"".join(ld(1, f) for f in frames)))


def list_records():
    return [
        ex(tags=b(b"a", b"bc", b""), label=i(1), name=b(b"first")),
        ex(tags=b(), label=i(2)),
        ex(name=b(bytes(range(200)))),
        ex(tags=b(b"only"), label=tf.train.Feature(), tags2=b(b"x")),
        ex(tags=b(*[bytes([65 + k]) * k for k in range(30)]), name=b(b"")),
        raw_example(entry("tags", bytes_feat(b"one")), entry("tags", bytes_feat(b"two", b"three"))),
    ]


def list_errors():
    return [
        ex(tags=i(1, 2), label=i(1)),
        ex(tags=b(b"a"), label=i(1), name=b(b"x", b"y")),
    ]


GOOD_CTX = dict(name=b(b"n"))
GOOD_LISTS = dict(frames=[f(1, 2)], words=[b(b"w")])


def seq_records():
    return [
        seqex(dict(length=i(3), name=b(b"clip1"), tags=b(b"a", b"bc")),
              dict(frames=[f(1, 2), f(3, 4), f(5.5, -6)], tokens=[i(1, 2), i(3), i()],
                   words=[b(b"x"), b(b"yy"), b(b"zzz")], opt=[i(7), i(8), i(9)])),
        seqex(dict(name=b(b"")), dict(frames=[], words=[], tokens=[])),
        seqex(dict(length=i(-1), name=b(bytes(range(256))), tags=b()),
              dict(frames=[f(1e-30, 3.4e38)], words=[b(b"\x00\xff")],
                   tokens=[i(2 ** 63 - 1, -(2 ** 63))], opt=[])),
        seqex(dict(name=b(b"ctx only"), unused=f(1)),
              dict(frames=[f(0, 0)] * 5, words=[b(b"")] * 5, other=[i(1)])),
        # hand-made: the context and the feature lists each given twice
        # (merged), a FeatureList given twice in one entry (frames appended),
        # unpacked values in frames, unknown fields
        ld(1, entry("name", bytes_feat(b"split")))
        + ld(2, fl_entry("frames", unpacked_floats(1, 2)) + fl_entry("words", bytes_feat(b"p")))
        + varint(7 << 3 | 0) + varint(5)
        + ld(1, entry("length", packed_ints(2)))
        + ld(2, fl_entry("tokens", unpacked_ints(4, 5), packed_ints(6))),
        # a feature list key given twice: the later entry replaces the first
        ld(1, entry("name", bytes_feat(b"dup")))
        + ld(2, fl_entry("frames", ld(2, ld(1, struct.pack("<ff", 1, 1))))
             + fl_entry("words", bytes_feat(b"a"))
             + fl_entry("frames", ld(2, ld(1, struct.pack("<ff", 2, 2))),
                        ld(2, ld(1, struct.pack("<ff", 3, 3))))),
        # a FeatureList given twice in one map entry: TensorFlow rejects it
        ld(1, entry("name", bytes_feat(b"x")))
        + ld(2, fl_entry("frames", ld(2, ld(1, struct.pack("<ff", 1, 1))))
             + ld(1, ld(1, b"words") + ld(2, ld(1, bytes_feat(b"p")))
                  + ld(2, ld(1, bytes_feat(b"q"))))),
        # an empty frame (no list set) of a VarLenFeature: no values
        seqex(dict(name=b(b"e")), dict(frames=[], words=[], tokens=[i(1), tf.train.Feature(), i(2)])),
        # an empty frame of a FixedLenSequenceFeature
        seqex(dict(name=b(b"e2")), dict(frames=[tf.train.Feature()], words=[b(b"x")])),
    ]


def seq_errors():
    return [
        seqex(GOOD_CTX, dict(frames=[f(1, 2), f(1, 2, 3)], words=[b(b"a"), b(b"b")])),
        seqex(GOOD_CTX, dict(words=[b(b"a")])),
        seqex(GOOD_CTX, dict(GOOD_LISTS, tokens=[i(1), f(1.0)])),
        seqex(GOOD_CTX, dict(frames=[f(1, 2)], words=[b(b"a", b"b")])),
        seqex(dict(length=i(1)), GOOD_LISTS),
        seqex(GOOD_CTX, GOOD_LISTS)[:-2],
        seqex(dict(GOOD_CTX, length=f(1)), GOOD_LISTS),
        seqex(GOOD_CTX, dict(GOOD_LISTS, opt=[i(1, 2)])),
        seqex(GOOD_CTX, dict(frames=[i(1, 2)], words=[b(b"a")])),
        # hostile: a frame whose list claims more bytes than the record has,
        # a packed float list of 5 bytes, a feature list length of 2^62
        ld(1, entry("name", bytes_feat(b"h")))
        + ld(2, fl_entry("words", bytes_feat(b"a"))
             + ld(1, ld(1, b"frames") + ld(2, varint(1 << 3 | 2) + varint(1000) + b"\x12\x00"))),
        ld(1, entry("name", bytes_feat(b"h")))
        + ld(2, fl_entry("words", bytes_feat(b"a")) + fl_entry("frames", ld(2, ld(1, b"\0" * 5)))),
        ld(1, entry("name", bytes_feat(b"h"))) + varint(2 << 3 | 2) + varint(1 << 62) + b"\x0a",
    ]


def hexjoin(strings):
    j = b"".join(strings)
    return j.hex() if j else "-"


def out_rows(spec, vals, seq=False):
    """pipefeed's output fields for TensorFlow's parse of one feature set."""
    rows = []
    for key, sp in spec.items():
        v = vals[key]
        if isinstance(v, tf.SparseTensor):
            values = v.values.numpy()
            if seq:  # per-frame counts from the indices
                nfr = int(v.dense_shape.numpy()[0])
                lens = [0] * nfr
                for r in v.indices.numpy()[:, 0]:
                    lens[int(r)] += 1
            else:
                lens = None
        else:
            values = v.numpy()
            lens = None
        if sp.dtype == tf.string:
            flat = list(np.asarray(values).reshape(-1))
            if isinstance(sp, tf.io.FixedLenFeature) and not sp.shape:
                rows.append("F %s %d %d %s" % (key, len(flat[0]), len(flat[0]), hexjoin(flat)))
                continue
            rows.append("F %s %d %d %s" % (key, sum(map(len, flat)), sum(map(len, flat)),
                                           hexjoin(flat)))
            ls = [str(len(x)) for x in flat]
            fixed = isinstance(sp, tf.io.FixedLenFeature)  # bytes[N]: NAME_len is i64[N]
            rows.append(("F %s_len %d %d %s" % (key, len(ls), 0 if fixed else len(ls),
                                                 " ".join(ls))).rstrip())
            continue
        a = np.asarray(values)
        flat = fmt_value(sp.dtype, a)
        if isinstance(sp, tf.io.FixedLenSequenceFeature):
            var = a.shape[0]
        elif isinstance(sp, tf.io.VarLenFeature):
            var = len(flat)
        else:
            var = 0
        rows.append(("F %s %d %d %s" % (key, len(flat), var, " ".join(flat))).rstrip())
        if lens is not None:
            rows.append(("F %s_len %d %d %s" % (key, len(lens), len(lens),
                                                 " ".join(map(str, lens)))).rstrip())
    return rows


def tf_error(e):
    msg = e.message.split("}} ")[-1].splitlines()[0] if e.message else "error"
    return msg.encode("ascii", "backslashreplace").decode()[:160]


def write_rows(name, recs, parse):
    with tf.io.TFRecordWriter(os.path.join(OUT, name + ".tfrecord")) as w:
        for r in recs:
            w.write(r)
    with open(os.path.join(OUT, name + ".expect"), "w") as e:
        e.write("# written by gen.py (TensorFlow %s)\n" % tf.__version__)
        for n, r in enumerate(recs):
            try:
                rows = parse(r)
            except (tf.errors.InvalidArgumentError, UnicodeDecodeError) as x:
                e.write("R %d error %s\n" % (n, tf_error(x) if hasattr(x, "message")
                                             else "Could not parse"))
                continue
            e.write("R %d ok\n" % n + "".join(row + "\n" for row in rows))


def parse_list(r):
    return out_rows(LIST_SPEC, tf.io.parse_single_example(r, LIST_SPEC))


def parse_seq(r):
    c, s = tf.io.parse_single_sequence_example(r, CTX_SPEC, SEQ_SPEC)
    return out_rows(CTX_SPEC, c) + out_rows(SEQ_SPEC, s, seq=True)



if __name__ == "__main__":
    if "--only-fixstr" in sys.argv:
        write_rows("fixstr", fixstr_records(), parse_fixstr)
        print("gen.py: wrote", OUT)
        sys.exit(0)
    write("basic", basic_records())
    errs = error_records()
    write("errors", [r for _, r in errs])
    write_rows("lists", list_records() + list_errors(), parse_list)
    write_rows("seq", seq_records(), parse_seq)
    write_rows("seqerrors", seq_errors(), parse_seq)
    write_rows("fixstr", fixstr_records(), parse_fixstr)
    if "--only-new" not in sys.argv:
        fmnist()
    print("gen.py: wrote", OUT)
