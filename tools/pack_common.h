/*
 * pack_common.h - what pipe-pack's subcommands share (internal to the tool):
 * the common options, the sharded output, number parsing, exit codes.
 *
 * Each subcommand lives in its own tools/pack_*.c and is one
 * `int pack_X(int argc, char **argv)` returning an exit code.
 */
#ifndef PF_PACK_COMMON_H
#define PF_PACK_COMMON_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"
#include "pf_schema.h"
#include "pf_shard.h"

/* Exit codes. */
enum { PACK_OK = 0, PACK_BAD = 1, PACK_USAGE = 2 };

/* Long-only option codes of the common options. */
enum {
	OPT_CODEC = 1000, OPT_LEVEL, OPT_CHECKSUM, OPT_BLOCK_SIZE,
	OPT_RPS, OPT_SHARDS, OPT_BLOCKS, OPT_THREADS,
	OPT_IMAGES, OPT_LABELS, OPT_ARRAY, OPT_RECORD_SIZE, OPT_FIELD,
	OPT_EXAMPLE, OPT_MAP, OPT_RECORDS, OPT_SEQ_EXAMPLE,
};

/* The options every packing subcommand takes (put them in its table). */
#define PACK_COMMON_LONGOPTS                                                   \
	{ "output", required_argument, NULL, 'o' },                            \
	{ "codec", required_argument, NULL, OPT_CODEC },                       \
	{ "level", required_argument, NULL, OPT_LEVEL },                       \
	{ "checksum", required_argument, NULL, OPT_CHECKSUM },                 \
	{ "block-size", required_argument, NULL, OPT_BLOCK_SIZE },             \
	{ "records-per-shard", required_argument, NULL, OPT_RPS },             \
	{ "shards", required_argument, NULL, OPT_SHARDS },                     \
	{ "quiet", no_argument, NULL, 'q' },                                   \
	{ "help", no_argument, NULL, 'h' }
#define PACK_COMMON_SHORTOPTS "o:qh"

struct pack_opts {
	pf_shard_write_opts w;
	const char *prefix;     /* -o */
	uint64_t rps;           /* --records-per-shard (0 = unset) */
	unsigned shards;        /* --shards (0 = unset) */
	int quiet;
};

/* Handle one common option (c from getopt_long).  Returns 1 when handled,
 * 0 when c is not a common option, PACK_USAGE-as-negative (-2) on a bad
 * value (a message was printed).  'h' prints the full usage and exits 0. */
int pack_common_opt(struct pack_opts *o, int c, const char *arg);

/* Check the common options after parsing (an output prefix, not both
 * --shards and --records-per-shard).  Returns 0 or -2 (message printed). */
int pack_common_check(const struct pack_opts *o, const char *cmd);

/* Print the short usage of cmd (or of the tool when NULL) to stderr and
 * return PACK_USAGE; pack_usage_full prints everything to stdout. */
int pack_usage(const char *cmd, const char *why, ...)
	__attribute__((format(printf, 2, 3)));
void pack_usage_full(void);

/* Numbers: "123", sizes with K/M/G suffixes (powers of 1024). 0 or -1. */
int pack_parse_u64(const char *s, uint64_t *v);
int pack_parse_size(const char *s, uint64_t *v);

/* Map a PF_E* code to an exit code (usage-like codes give PACK_BAD too:
 * by the time the library is called, the command line was fine). */
int pack_exit(int rc);

/* Print "pipe-pack: MESSAGE" for err to stderr. */
void pack_report(const pf_error *err);

double pack_now(void);  /* monotonic seconds */

/*
 * The sharded output.  `total` records are split over the shards
 * contiguously: by --records-per-shard, or evenly over --shards N (the
 * first total % N shards get one more), or all into one shard.  Shards are
 * opened as records arrive and summarised (unless quiet) as they close.
 * On failure pack_out_abort removes every shard this run wrote, so no
 * partial set is left behind.
 */
struct pack_out {
	const struct pack_opts *o;
	pf_schema schema;
	uint64_t total;
	unsigned nshards;
	unsigned cur;           /* index of the open shard (or next to open) */
	uint64_t cur_left;      /* records the open shard still takes */
	pf_shard_writer *w;
	double t0, t_shard;
	uint64_t sum_records, sum_raw, sum_stored;
	uint64_t shard_records, shard_raw;
	char name[4096];
};

int pack_out_begin(struct pack_out *p, const struct pack_opts *o,
		   const pf_schema *schema, uint64_t total, pf_error *err);
int pack_out_add(struct pack_out *p, const void *rec, size_t len, pf_error *err);
/* Close the last shard (and any empty ones left) and print the total. */
int pack_out_end(struct pack_out *p, pf_error *err);
void pack_out_abort(struct pack_out *p);

/* Pipelines into shards (tools/pack_pipe.c): the elements of spec (a
 * source and maps) as records of their schema, `total` of them (from a
 * counting pass; a different number is an error); the count of a spec's
 * elements; paths as a spec list of quoted strings.  0 or a code. */
int pack_pipeline(const struct pack_opts *o, const char *spec, uint64_t total, pf_error *err);
int pack_count(const char *spec, uint64_t *n, pf_error *err);
int pack_spec_paths(char *buf, size_t cap, char **paths, int n);
/* pipe-pack info on a TFRecord file (tools/pack_info.c): the features of
 * its first `nrec` Examples. */
int pack_info_tfrecord(const char *path, uint64_t nrec);

/* The subcommands. */
int pack_idx(int argc, char **argv);
int pack_npy(int argc, char **argv);
int pack_raw(int argc, char **argv);
int pack_tfrecord(int argc, char **argv);
int pack_wds(int argc, char **argv);
int pack_verify(int argc, char **argv);
int pack_info(int argc, char **argv);

#endif /* PF_PACK_COMMON_H */
