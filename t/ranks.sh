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
# ASan builds: leak checks off in the processes mpirun starts.  OpenMPI
# 4.1 keeps allocations of MPI_Init to exit in components it dlclose()s at
# MPI_Finalize, so their frames have no names a suppression could match;
# pipe-train's own frees are checked by the runs alone in these tests and
# by t5101/t5102, and ASan's other checks and UBSan stay on in the ranks.
MPI_ASAN="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
# mpirun_n N CMD...: N ranks of CMD, bounded in time
mpirun_n() {
	n=$1
	shift
	ASAN_OPTIONS=$MPI_ASAN timeout 120 mpirun --oversubscribe -np "$n" "$@"
}
