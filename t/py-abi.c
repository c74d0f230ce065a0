/*
 * py-abi: the sizes and field offsets of the public structs the Python
 * package (python/pipefeed/_lib.py) mirrors with ctypes, one "NAME VALUE" a
 * line, and the constants it copies.  t/t6001-python-abi compares them with
 * ctypes' own, so a C struct change not carried into _lib.py fails there.
 */
#include <stddef.h>
#include <stdio.h>

#include "pipefeed.h"
#include "pf_spec.h"
#include "pf_stats.h"
#include "pf_devfeed.h"

#define S(t) printf("%s %zu\n", #t, sizeof(t))
#define F(t, f) printf("%s.%s %zu\n", #t, #f, offsetof(t, f))

int main(void)
{
	S(pf_error); F(pf_error, code); F(pf_error, msg);
	S(pf_options); F(pf_options, memory_budget); F(pf_options, cpu_budget);
	F(pf_options, seed); F(pf_options, nondeterministic);
	F(pf_options, batch_alloc); F(pf_options, batch_free); F(pf_options, alloc_user);
	F(pf_options, world); F(pf_options, rank); F(pf_options, split);
	S(pf_field); F(pf_field, name); F(pf_field, dtype); F(pf_field, ndim); F(pf_field, dims);
	S(pf_schema); F(pf_schema, nfields); F(pf_schema, fields);
	S(pf_elem); F(pf_elem, schema); F(pf_elem, batch); F(pf_elem, id); F(pf_elem, data);
	F(pf_elem, nitems); F(pf_elem, var_len); F(pf_elem, lengths); F(pf_elem, buf);
	F(pf_elem, nbytes); F(pf_elem, ref_);
	S(pf_iter_pos); F(pf_iter_pos, epoch); F(pf_iter_pos, delivered);
	F(pf_iter_pos, at_end); F(pf_iter_pos, nops); F(pf_iter_pos, op_epoch);
	F(pf_iter_pos, order);
	S(pf_op_stats); F(pf_op_stats, name); F(pf_op_stats, elements); F(pf_op_stats, bytes);
	F(pf_op_stats, busy_ns); F(pf_op_stats, wait_input_ns); F(pf_op_stats, blocked_output_ns);
	F(pf_op_stats, buffer_bytes); F(pf_op_stats, parallelism); F(pf_op_stats, depth);
	F(pf_op_stats, autotuned); F(pf_op_stats, corrupt_blocks); F(pf_op_stats, skipped_records);
	F(pf_op_stats, dropped_samples); F(pf_op_stats, occupancy); F(pf_op_stats, cpu_ns);
	F(pf_op_stats, serial_cpu_ns);
	F(pf_op_stats, decoded_records);
	S(pf_map_ctx); F(pf_map_ctx, in); F(pf_map_ctx, record); F(pf_map_ctx, args);
	F(pf_map_ctx, user); F(pf_map_ctx, out); F(pf_map_ctx, max_out_bytes);
	F(pf_map_ctx, state); F(pf_map_ctx, free_state);
	S(pf_stats_opts); F(pf_stats_opts, interval_ms); F(pf_stats_opts, label);
	F(pf_stats_opts, sample_cap); F(pf_stats_opts, step_cap); F(pf_stats_opts, event_cap);
	F(pf_stats_opts, drop_cap);
	S(pf_device_opts); F(pf_device_opts, index); F(pf_device_opts, cpu_threads);
	F(pf_device_opts, test_copy_delay_us); F(pf_device_opts, test_compute_delay_us);
	F(pf_device_opts, test_seed); F(pf_device_opts, tf32);
	S(pf_devfeed_opts); F(pf_devfeed_opts, depth); F(pf_devfeed_opts, slot_bytes);
	F(pf_devfeed_opts, epochs); F(pf_devfeed_opts, pinned_batches);
	F(pf_devfeed_opts, zero_copy); F(pf_devfeed_opts, timeline);
	S(pf_devbatch); F(pf_devbatch, slot); F(pf_devbatch, batch); F(pf_devbatch, id);
	F(pf_devbatch, seq); F(pf_devbatch, epoch); F(pf_devbatch, schema);
	F(pf_devbatch, data); F(pf_devbatch, nitems); F(pf_devbatch, nbytes);
	S(pf_devfeed_stats); F(pf_devfeed_stats, batches); F(pf_devfeed_stats, bytes);
	F(pf_devfeed_stats, host_wait_ns); F(pf_devfeed_stats, stall_host_ns);
	F(pf_devfeed_stats, stall_device_ns); F(pf_devfeed_stats, feeder_input_ns);
	F(pf_devfeed_stats, feeder_slot_ns); F(pf_devfeed_stats, copy_ns);
	F(pf_devfeed_stats, zero_copy);
	printf("PF_POS_ORDER %d\n", PF_POS_ORDER);
	printf("PF_POS_MAX_OPS %d\n", PF_POS_MAX_OPS);
	printf("PF_MAX_FIELDS %d\n", PF_MAX_FIELDS);
	printf("PF_ERROR_MSG_MAX %d\n", PF_ERROR_MSG_MAX);
	return 0;
}
