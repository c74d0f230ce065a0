# ranks.sh - what the pipe-train-over-ranks tests share (sourced after
# tap.sh): skip without OpenMPI, and mpirun on loopback.
if ! grep -q '^#define HAVE_MPI 1' "$top_builddir/config.h" 2>/dev/null; then
	skip_all "pipe-train built without MPI (libopenmpi-dev)"
fi
if ! command -v mpirun >/dev/null 2>&1; then
	skip_all "no mpirun (openmpi-bin)"
fi
# CI runs as root: OpenMPI refuses that unless told
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# one machine: over loopback TCP (no shared-memory transport surprises)
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo \
	OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_rmaps_base_oversubscribe=1
# mpirun_n N CMD...: N ranks of CMD, bounded in time
mpirun_n() {
	n=$1
	shift
	timeout 120 mpirun --oversubscribe -np "$n" "$@"
}
