"""What the tests share: where their data is (set by the t/t60xx wrappers,
or by hand for pytest: PF_TEST_TMP, PF_SYN, PF_FMNIST_DIR, PF_ABI)."""
import glob
import os
import shutil
import unittest


def env(name):
    v = os.environ.get(name)
    if not v:
        raise unittest.SkipTest("$%s not set (run through make check)" % name)
    return v


def syn_spec(tail="batch(32)", files=None):
    return 'shards("%s", cycle=4) | map(decode) | %s' % (files or env("PF_SYN"), tail)


def tool_env():
    """The environment for running a C tool of the build: without the
    sanitizer runtime t/python.sh preloads into python (a sanitized tool
    links its own, and a second copy crashes it)."""
    e = dict(os.environ)
    if e.get("PF_SAN_PRELOAD") and e.get("LD_PRELOAD") == e["PF_SAN_PRELOAD"]:
        del e["LD_PRELOAD"]
    return e


def damaged_copy(name, which):
    """A copy of the synthetic shards in $PF_TEST_TMP/name with one byte of
    shard number `which` flipped a third of the way in (inside a block, so
    its checksum fails).  Returns (directory, path of the damaged file)."""
    src = sorted(glob.glob(env("PF_SYN")))
    dst = os.path.join(env("PF_TEST_TMP"), name)
    os.makedirs(dst, exist_ok=True)
    for f in src:
        shutil.copy(f, dst)
    bad = os.path.join(dst, os.path.basename(src[which]))
    with open(bad, "r+b") as f:
        size = os.path.getsize(bad)
        f.seek(size // 3)
        c = f.read(1)
        f.seek(size // 3)
        f.write(bytes([c[0] ^ 0x5A]))
    return dst, bad
