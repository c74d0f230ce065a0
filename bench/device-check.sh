#!/bin/sh
# bench/device-check.sh - the checks and figures that need a CUDA GPU, in one
# run, for a machine that has the driver and CUDA 13 (cuBLAS) but not the
# project's other libraries.
#
#   bench/device-check.sh DIR
#
# DIR holds what a build here made (see "Preparing DIR" below): bin/ (the
# tools, t/t300[1-5] and the benches), lib/ (pf_cuda.so, liburing, libzstd,
# libgfortran, libquadmath, libopenblas.so.0.xz) and data/ (the four
# Fashion-MNIST .gz files).  Prints TAP of the device tests, then the
# figures; writes logs to $OUT (or DIR/out) when set.
#
# Preparing DIR (a static build: libtool wrappers would point at this tree):
#   mkdir build-gpu && cd build-gpu && ../configure --disable-shared --with-cuda
#   make all check TESTS= bench   # pf_cuda.la fails with --disable-shared:
#   gcc -shared -o cuda/.libs/pf_cuda.so cuda/.libs/*.o -L$CUDA/lib64 \
#       -lcublas -lcudart -lstdc++
# then copy the programs, that module and the libraries into DIR.
set -u
G=$(cd "${1:?usage: device-check.sh DIR}" && pwd)
O=${OUT:-$G/out}
mkdir -p "$O"
W=$(mktemp -d)
cd "$W" || exit 1

if [ ! -e "$G/lib/libopenblas.so.0" ]; then
	xz -dc "$G/lib/libopenblas.so.0.xz" > "$G/lib/libopenblas.so.0" 2>/dev/null ||
	python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' \
		"$G/lib/libopenblas.so.0.xz" > "$G/lib/libopenblas.so.0"
fi
CUBLAS=$(ls /usr/local/cuda/lib64/libcublas.so.13 2>/dev/null ||
	 find / -name 'libcublas.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$G/lib:${CUBLAS%/*}:${LD_LIBRARY_PATH:-}"
export PF_CUDA_MODULE="$G/lib/pf_cuda.so"
export PF_PIPE_TRAIN="$G/bin/pipe-train"
B=$G/bin
T() { timeout "$@"; }

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader
nproc
echo "cublas: $CUBLAS"

echo "== device tests"
for t in "$B"/t300*; do
	echo "# ${t##*/}"
	T 120 "$t" > "$O/${t##*/}.tap" 2>&1
	echo "rc=$? $(grep -c '^ok' "$O/${t##*/}.tap") ok, $(grep -c '^not ok' "$O/${t##*/}.tap") not ok $(grep -m1 SKIP "$O/${t##*/}.tap")"
	grep '^not ok' "$O/${t##*/}.tap" | head -5
done
if command -v compute-sanitizer >/dev/null; then
	echo "# compute-sanitizer memcheck t3005"
	T 120 compute-sanitizer --tool memcheck "$B/t3005-cuda-vs-cpu" 2>&1 | grep -E 'ERROR SUMMARY|^not ok' | head -5
fi

echo "== Fashion-MNIST"
D=/usr/share/datasets/fashion-mnist
[ -r $D/train-images-idx3-ubyte.gz ] || D=$G/data
"$B/pipe-pack" idx --images $D/train-images-idx3-ubyte.gz --labels $D/train-labels-idx1-ubyte.gz \
	-o "$W/fmnist-train" --shards 4 > /dev/null &&
"$B/pipe-pack" idx --images $D/t10k-images-idx3-ubyte.gz --labels $D/t10k-labels-idx1-ubyte.gz \
	-o "$W/fmnist-test" --shards 1 > /dev/null || exit 1
TR="$W/fmnist-train-*.pfs"
TE="$W/fmnist-test-*.pfs"
echo "# pipe-train --device cuda, 5 epochs, batch 64 (the demo)"
T 120 "$B/pipe-train" --device cuda --epochs 5 --batch 64 --eval "$TE" --stats "$O/cuda64.pfstat" "$TR" 2>&1 | tail -4
T 60 "$B/pipe-stat" "$O/cuda64.pfstat" > "$O/cuda64.stat.txt" 2>&1
grep -iE 'verdict|bottleneck|stall' "$O/cuda64.stat.txt" | head -6
for bs in 64 256 1024; do
	for dev in cuda cpu; do
		printf 'json %s batch %s: ' $dev $bs
		T 120 "$B/pipe-train" --device $dev --epochs 5 --batch $bs --seed 1 --json --quiet --eval "$TE" "$TR"
	done
done
echo "# batch 1024 on cuda: where the time goes"
T 120 "$B/pipe-train" --device cuda --epochs 5 --batch 1024 --quiet --stats "$O/cuda1024.pfstat" "$TR" | tail -1
T 60 "$B/pipe-stat" "$O/cuda1024.pfstat" > "$O/cuda1024.stat.txt" 2>&1
grep -E '^(stall|bottleneck|knobs):' "$O/cuda1024.stat.txt"
echo "# same seed, same model on cuda: two runs' test accuracy"
for i in 1 2; do T 60 "$B/pipe-train" --device cuda --epochs 2 --batch 64 --seed 3 --json --quiet --eval "$TE" "$TR" | sed 's/.*"train_loss"/"train_loss"/'; done

echo "# interrupted at step 1000 and resumed on cuda: the same batches, the same model"
T 60 "$B/pipe-train" --device cuda --epochs 2 --seed 5 --quiet --fingerprint "$W/fp.all" --save "$W/all.ckpt" "$TR" > /dev/null
T 60 "$B/pipe-train" --device cuda --epochs 2 --seed 5 --quiet --fingerprint "$W/fp.a" --checkpoint "$W/run.ckpt" --stop-after-steps 1000 "$TR" > /dev/null 2>&1
echo "stopped: rc=$? (130 expected)"
T 60 "$B/pipe-train" --resume "$W/run.ckpt" --quiet --read-threads 3 --fingerprint "$W/fp.b" --save "$W/res.ckpt" > /dev/null
cat "$W/fp.a" "$W/fp.b" | cmp -s - "$W/fp.all" && echo "fingerprints: equal ($(wc -l < "$W/fp.all") batches)" || echo "fingerprints: DIFFER"
cmp -s "$W/all.ckpt" "$W/res.ckpt" && echo "final model: bit for bit equal" || echo "final model: differs (cmp: $(cmp "$W/all.ckpt" "$W/res.ckpt" 2>&1 | head -1))"
echo "# which OpenBLAS kernel the cpu backend got"
OPENBLAS_VERBOSE=2 T 30 "$B/pipe-train" --device cpu --epochs 1 --model mlp:784-128-10 --quiet "$TE" 2>&1 | grep -i core | head -2
lscpu | grep -i "model name"

echo "== copy rate (pinned vs pageable)"
T 120 "$B/copy_bench" cuda 7

echo "== naive loop vs pipe-train on cuda (median of 3, 5 epochs)"
for bs in 64 1024; do
	T 200 "$B/train_bench" "$TR" "$TE" 3 5 cuda $bs | tail -4
done

echo "== pipeline_bench on $(nproc) cores (issue 3)"
T 150 "$B/pipeline_bench" $D 5 2>&1 | tail -11
echo "== done"
