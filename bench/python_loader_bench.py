#!/usr/bin/env python3
"""python_loader_bench: PyTorch's DataLoader (0 and 2 workers) against
pipefeed.torch.Loader, side by side on the same Fashion-MNIST data and the
same training loop: the 784-128-10 MLP, Adam (lr 1e-3), batch 64, shuffled,
on the CPU.

    bench/python_loader_bench.py [--epochs 5] [--repeat 3] [--build .] [--torch-threads 1|auto]

For each loader, in a fresh child process (so peak memory is its own):
  wait%     share of the loop's wall time spent waiting for the next batch
  wall_s    the whole training run (all epochs)
  img/s     the loader alone: one epoch iterated with nothing else (median
            of 3 epochs), images per second
  cpu_s     CPU time of the training run: the process's threads and its
            worker processes (on a shared machine, steadier than wall_s)
  peak_MiB  peak memory of the process and its worker processes together:
            the sum of their PSS (shared pages split between them), sampled
            every 100 ms
  test_acc  accuracy on the 10000 test images after training
each the median of --repeat runs (the loaders interleaved, so that a change
of the machine's load falls on all of them), and the ratios of those medians
against the best DataLoader setting.  The DataLoader reads a
map-style Dataset over the IDX arrays (uint8, in memory) and converts each
sample as torchvision's ToTensor does (float / 255) with an int64 label;
pipefeed reads the same images packed into 4 zstd shards by pipe-pack and
runs `map(decode_f32)` (the same float / 255).  Every run sizes the
model's threads the same way, with pipefeed.torch.set_threads(--torch-threads):
torch's intra-op threads and the pool of the BLAS library torch's GEMMs
run on (Debian's torch: OpenBLAS, whose one-thread-per-CPU pool
torch.set_num_threads leaves alone, spinning beside the loop; before this
the runs had 1 torch thread and 2 OpenBLAS threads).  The load average
(uptime) is printed at the start and the end.  --keep-heap 1 (the
default) calls pipefeed.torch.keep_heap() in every run: glibc keeps the
memory torch frees each step instead of returning it to the kernel (the
same loop for every loader; 0 for glibc's defaults).
"""
import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

FMNIST = "/usr/share/datasets/fashion-mnist"


def idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def make_loader(kind, args):
    import torch
    if kind == "pipefeed":
        from pipefeed.torch import Loader
        spec = ('shards("%s/train-*.pfs", reads=%d) | map(decode_f32, par=auto)'
                ' | shuffle(10000) | batch(64) | prefetch' % (args.shards, args.reads))
        return Loader(spec, seed=1, cpu_budget=args.cpu_budget)
    images = idx(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")).copy()
    labels = idx(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz")).copy()

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return (torch.from_numpy(images[i]).float().div_(255.0),
                    int(labels[i]))

    workers = int(kind.split("-")[1])
    g = torch.Generator()
    g.manual_seed(1)
    return torch.utils.data.DataLoader(DS(), batch_size=64, shuffle=True,
                                       num_workers=workers, generator=g,
                                       persistent_workers=workers > 0)


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(pid):
    out = [pid]
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                for c in f.read().split():
                    out += tree(int(c))
    except OSError:
        pass
    return out


class PeakMemory:
    """Peak of the summed PSS of this process and its descendants."""

    def __init__(self):
        import threading
        self.peak = 0
        self.stop = False
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, sum(pss_kib(p) for p in tree(os.getpid())))
            time.sleep(0.1)

    def done(self):
        self.stop = True
        self.th.join()
        return self.peak / 1024.0


def cpu_s():
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def worker_cpu_s():
    """CPU of live worker processes (not yet reaped: RUSAGE_CHILDREN misses them)."""
    tot = 0.0
    tck = os.sysconf("SC_CLK_TCK")
    for p in tree(os.getpid())[1:]:
        try:
            with open("/proc/%d/stat" % p) as f:
                v = f.read().rsplit(")", 1)[1].split()
            tot += (int(v[11]) + int(v[12])) / tck
        except (OSError, IndexError):
            pass
    return tot


def one(kind, args):
    """Run one loader in this process; print a JSON line of its figures."""
    import torch
    from pipefeed.torch import set_threads, keep_heap
    torch.manual_seed(0)
    set_threads(args.torch_threads)
    if args.keep_heap:
        keep_heap()
    mem = PeakMemory()
    loader = make_loader(kind, args)
    # the loader alone
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        n = 0
        for x, y in loader:
            n += len(y)
        rates.append(n / (time.perf_counter() - t0))
        del x, y
    rates.sort()
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    wait = 0.0
    steps = 0
    c_start = cpu_s() + worker_cpu_s()
    t_start = time.perf_counter()
    for epoch in range(args.epochs):
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            wait += time.perf_counter() - t0
            loss = torch.nn.functional.cross_entropy(model(x.view(-1, 784)), y.long())
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            del x, y
    wall = time.perf_counter() - t_start
    cpu = cpu_s() + worker_cpu_s() - c_start
    ti = torch.from_numpy(idx(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")).copy())
    tl = torch.from_numpy(idx(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")).copy())
    with torch.no_grad():
        acc = (model(ti.view(-1, 784).float() / 255).argmax(1) == tl.long()).float().mean().item()
    if hasattr(loader, "close"):
        loader.close()
    del loader
    peak = mem.done()
    print(json.dumps({"kind": kind, "wait": wait / wall, "wall": wall, "cpu": cpu,
                      "steps": steps, "rate": rates[1], "peak_mib": peak, "acc": acc}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--build", default=".", help="build tree (pipe-pack, .libs)")
    ap.add_argument("--shards", help="directory of train-*.pfs (default: packed now)")
    ap.add_argument("--torch-threads", default="1",
                    help="torch's and its BLAS's threads in every run (a count or auto)")
    ap.add_argument("--keep-heap", type=int, default=1,
                    help="1: pipefeed.torch.keep_heap() in every run (glibc keeps freed memory)")
    ap.add_argument("--reads", type=int, default=1, help="pipefeed shard reader threads")
    ap.add_argument("--cpu-budget", type=int, default=0, help="pipefeed cpu_budget")
    ap.add_argument("--only", help="comma list of dl-0,dl-2,pipefeed")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each loader (interleaved); figures are medians")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args.one, args)
    if not os.path.exists(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")):
        print("python_loader_bench: %s missing (apt-get install dataset-fashion-mnist)" % FMNIST)
        return 77
    tmp = None
    if not args.shards:
        tmp = tempfile.mkdtemp(prefix="pf-pybench-")
        subprocess.check_call([os.path.join(args.build, "pipe-pack"), "idx", "-q",
                               "--images", os.path.join(FMNIST, "train-images-idx3-ubyte.gz"),
                               "--labels", os.path.join(FMNIST, "train-labels-idx1-ubyte.gz"),
                               "-o", os.path.join(tmp, "train"), "--shards", "4"])
        args.shards = tmp
    env = dict(os.environ)
    env.setdefault("PIPEFEED_LIB", os.path.abspath(os.path.join(args.build, ".libs", "libpipefeed.so")))
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.path.join(here, "..", "python") + os.pathsep + env.get("PYTHONPATH", "")
    kinds = (args.only or "dl-0,dl-2,pipefeed").split(",")
    load0 = os.getloadavg()
    runs = {k: [] for k in kinds}
    for r in range(args.repeat):          # interleaved: the load drifts
        for k in kinds:
            cmd = [sys.executable, os.path.abspath(__file__), "--one", k,
                   "--epochs", str(args.epochs), "--shards", args.shards,
                   "--torch-threads", str(args.torch_threads), "--reads", str(args.reads),
                   "--cpu-budget", str(args.cpu_budget), "--keep-heap", str(args.keep_heap)]
            out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, check=True).stdout
            runs[k].append(json.loads(out.decode().strip().splitlines()[-1]))
            print("# %s run %d: wait %.2f%% wall %.2f s" % (k, r + 1, 100 * runs[k][-1]["wait"],
                                                         runs[k][-1]["wall"]),
                  file=sys.stderr, flush=True)
    rows = {}
    for k in kinds:
        rows[k] = {"kind": k}
        for f in ("wait", "wall", "cpu", "rate", "peak_mib", "acc"):
            v = sorted(x[f] for x in runs[k])
            rows[k][f] = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    names = {"dl-0": "DataLoader, 0 workers", "dl-2": "DataLoader, 2 workers",
             "pipefeed": "pipefeed.torch.Loader"}
    print("%d epochs, batch 64, MLP 784-128-10, Adam, torch+BLAS threads %s, keep_heap %d, %d CPUs, "
          "medians of %d runs each (interleaved), load average (1, 5, 15 min) %s at the start, %s at the end"
          % (args.epochs, args.torch_threads, args.keep_heap, os.cpu_count(), args.repeat,
             "%.1f %.1f %.1f" % load0, "%.1f %.1f %.1f" % os.getloadavg()))
    print("%-24s %7s %8s %8s %10s %9s %9s" % ("loader", "wait%", "wall_s", "cpu_s", "img/s",
                                               "peak_MiB", "test_acc"))
    for k in kinds:
        r = rows[k]
        print("%-24s %6.1f%% %8.2f %8.2f %10.0f %9.0f %9.4f" % (
            names.get(k, k), 100 * r["wait"], r["wall"], r["cpu"], r["rate"], r["peak_mib"], r["acc"]))
    if args.repeat > 1:
        for k in kinds:
            print("  %-22s wait%% per run: %s; wall_s per run: %s" % (
                k, " ".join("%.2f" % (100 * x["wait"]) for x in runs[k]),
                " ".join("%.2f" % x["wall"] for x in runs[k])))
    dls = [rows[k] for k in kinds if k.startswith("dl-")]
    if "pipefeed" in rows and dls:
        best = min(dls, key=lambda r: r["wall"])
        fast = max(dls, key=lambda r: r["rate"])
        pf = rows["pipefeed"]
        print("pipefeed vs best DataLoader (%s): wall %.2fx shorter, loader alone %.1fx the images/s (vs %s), "
              "peak memory %.2fx of %s" % (best["kind"], best["wall"] / pf["wall"], pf["rate"] / fast["rate"],
                                           fast["kind"], pf["peak_mib"] / rows.get("dl-2", best)["peak_mib"],
                                           rows.get("dl-2", best)["kind"]))
    if tmp:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
