/* source_args.c - the spec arguments the file sources (shards, tfrecord)
 * share, both ways: resolved arguments <-> pf_source_opts. */
#include "pf_op.h"

void pf_source_opts_from_args(const pf_arg *a, pf_source_opts *o)
{
	*o = (pf_source_opts){
		.cycle_length = a[1].set ? (int)a[1].i : 0,
		.block_length = a[2].set ? (int)a[2].i : 0,
		.num_parallel_reads = a[3].set ? (int)a[3].i : 0,
		.shuffle_files = (int)a[4].i,
		.skip_corrupt = (int)a[5].i,
		.max_corrupt = a[6].i,
		.consumer_waits = (int)a[7].i,
	};
}

void pf_source_args(char *const *paths, size_t n, const pf_source_opts *o,
		    pf_arg *a)
{
	a[0] = (pf_arg){ .set = 1, .sv = (const char *const *)paths, .n = (int)n };
	a[1] = (pf_arg){ .set = o->cycle_length != 0, .i = o->cycle_length };
	a[2] = (pf_arg){ .set = o->block_length != 0, .i = o->block_length };
	a[3] = (pf_arg){ .set = o->num_parallel_reads != 0, .i = o->num_parallel_reads };
	a[4] = (pf_arg){ .set = o->shuffle_files != 0, .i = o->shuffle_files != 0 };
	a[5] = (pf_arg){ .set = o->skip_corrupt != 0, .i = o->skip_corrupt != 0 };
	a[6] = (pf_arg){ .set = o->max_corrupt != 0, .i = o->max_corrupt };
	a[7] = (pf_arg){ .set = o->consumer_waits != 0, .i = o->consumer_waits != 0 };
}
