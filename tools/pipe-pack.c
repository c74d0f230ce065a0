/*
 * pipe-pack - convert existing data (IDX, .npy, raw fixed-size records,
 * TFRecord) into pipefeed shards, and check or describe shards.
 *
 * This file holds main(), the usage text and what the subcommands share
 * (common options, the sharded output); each subcommand is in its own
 * tools/pack_*.c.  See doc/pipe-pack.1.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pack_common.h"
#include "pf_checksum.h"

static const char usage_text[] =
"usage: pipe-pack COMMAND [OPTIONS] ...\n"
"\n"
"Convert data into pipefeed shards (PREFIX-00000-of-0000N.pfs), or check them.\n"
"\n"
"  pipe-pack idx --images FILE [--labels FILE] -o PREFIX [OPTIONS]\n"
"      IDX files (MNIST family), plain or gzip'd; schema image: T[dims], label: T\n"
"  pipe-pack npy --array NAME=FILE.npy [--array NAME=FILE.npy ...] -o PREFIX [OPTIONS]\n"
"      .npy arrays (C order) paired along their first dimension; one field each\n"
"  pipe-pack raw --record-size N [--field NAME:DTYPE[SHAPE] ...] -o PREFIX [OPTIONS] FILE...\n"
"      fixed-size little-endian records (default schema record: u8[N])\n"
"  pipe-pack tfrecord -o PREFIX [--example SPEC | --sequence-example SPEC [--map FN]] [OPTIONS] FILE...\n"
"      TFRecord files, both CRCs checked; schema record: u8[?], or with\n"
"      --example 'image=bytes,label=i64' each tf.train.Example parsed as\n"
"      map(parse_example(SPEC)) (then map(FN), e.g. --map 'decode_image(size=[28,28],channels=1)')\n"
"      and the shards get the parsed fields; --sequence-example 'len=i64,frames=f32[?,2](seq)':\n"
"      each tf.train.SequenceExample through map(parse_sequence_example(SPEC))\n"
"  pipe-pack wds -o PREFIX [--map FN] [OPTIONS] FILE...\n"
"      WebDataset tar shards (brace patterns allowed): one u8[?] field per extension\n"
"  pipe-pack verify [-j THREADS] [-q] FILE...\n"
"      check every block checksum, record and the index of each shard\n"
"  pipe-pack info [--blocks N|all] [--records N] FILE\n"
"      header, schema, counts and the block table of one shard; of a TFRecord\n"
"      file, the features of its first N tf.train.Examples (default 10), or\n"
"      SequenceExamples' context features and feature lists, and the spec\n"
"\n"
"Options of the packing commands:\n"
"  -o, --output PREFIX        output name prefix (required)\n"
"      --shards N             split the records evenly over N shards (default 1)\n"
"      --records-per-shard N  or: at most N records per shard\n"
"      --codec zstd|none      block compression (default zstd)\n"
"      --level N              zstd level (default 6)\n"
"      --checksum crc32c|xxh64  block checksum (default crc32c)\n"
"      --block-size SIZE      raw bytes per block, e.g. 256K, 1M (default 256K)\n"
"  -q, --quiet                no per-shard summary\n"
"  -h, --help                 this text\n"
"\n"
"Exit status: 0 ok, 1 damaged or invalid data (or an I/O error), 2 usage error.\n";

void pack_usage_full(void)
{
	fputs(usage_text, stdout);
}

static const char *short_usage(const char *cmd)
{
	if (!cmd)
		return "pipe-pack idx|npy|raw|tfrecord|wds|verify|info ...";
	if (!strcmp(cmd, "idx"))
		return "pipe-pack idx --images FILE [--labels FILE] -o PREFIX [OPTIONS]";
	if (!strcmp(cmd, "npy"))
		return "pipe-pack npy --array NAME=FILE.npy [--array ...] -o PREFIX [OPTIONS]";
	if (!strcmp(cmd, "raw"))
		return "pipe-pack raw --record-size N [--field NAME:DTYPE[SHAPE] ...] -o PREFIX [OPTIONS] FILE...";
	if (!strcmp(cmd, "tfrecord"))
		return "pipe-pack tfrecord -o PREFIX [--example SPEC | --sequence-example SPEC [--map FN]] [OPTIONS] FILE...";
	if (!strcmp(cmd, "wds"))
		return "pipe-pack wds -o PREFIX [--map FN] [OPTIONS] FILE...";
	if (!strcmp(cmd, "verify"))
		return "pipe-pack verify [-j THREADS] [-q] FILE...";
	if (!strcmp(cmd, "info"))
		return "pipe-pack info [--blocks N|all] [--records N] FILE";
	return "pipe-pack COMMAND ...";
}

int pack_usage(const char *cmd, const char *why, ...)
{
	if (why) {
		va_list ap;

		fputs("pipe-pack: ", stderr);
		va_start(ap, why);
		vfprintf(stderr, why, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	fprintf(stderr, "usage: %s\nTry 'pipe-pack --help' for more.\n",
		short_usage(cmd));
	return PACK_USAGE;
}

int pack_parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return (errno || *end) ? -1 : 0;
}

int pack_parse_size(const char *s, uint64_t *v)
{
	char *end;
	unsigned sh = 0;

	if (!s || !*s || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	*v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': sh = 10; end++; break;
	case 'm': case 'M': sh = 20; end++; break;
	case 'g': case 'G': sh = 30; end++; break;
	default: break;
	}
	if (sh && (*end == 'i' || *end == 'I'))
		end++;
	if (sh && (*end == 'b' || *end == 'B'))
		end++;
	if (*end || (sh && *v > (UINT64_MAX >> sh)))
		return -1;
	*v <<= sh;
	return 0;
}

int pack_common_opt(struct pack_opts *o, int c, const char *arg)
{
	uint64_t v;

	switch (c) {
	case 'o':
		o->prefix = arg;
		return 1;
	case 'q':
		o->quiet = 1;
		return 1;
	case 'h':
		pack_usage_full();
		exit(PACK_OK);
	case OPT_CODEC:
		if ((o->w.codec = pf_codec_parse(arg)) < 0)
			return pack_usage(NULL, "unknown codec '%s' (zstd or none)", arg), -2;
		o->w.codec_set = 1;
		return 1;
	case OPT_LEVEL:
		if (pack_parse_u64(arg, &v) < 0 || v < 1 || v > 22)
			return pack_usage(NULL, "--level wants 1..22, not '%s'", arg), -2;
		o->w.level = (int)v;
		return 1;
	case OPT_CHECKSUM:
		if ((o->w.checksum = pf_checksum_parse(arg)) < 0)
			return pack_usage(NULL, "unknown checksum '%s' (crc32c or xxh64)", arg), -2;
		return 1;
	case OPT_BLOCK_SIZE:
		if (pack_parse_size(arg, &v) < 0 || v < 1024 ||
		    v > PF_SHARD_MAX_BLOCK_RAW / 2)
			return pack_usage(NULL, "--block-size wants 1K..512M, not '%s'", arg), -2;
		o->w.block_size = (size_t)v;
		return 1;
	case OPT_RPS:
		if (pack_parse_u64(arg, &o->rps) < 0 || o->rps == 0)
			return pack_usage(NULL, "--records-per-shard wants a positive number, not '%s'",
					  arg), -2;
		return 1;
	case OPT_SHARDS:
		if (pack_parse_u64(arg, &v) < 0 || v == 0 || v > 99999)
			return pack_usage(NULL, "--shards wants 1..99999, not '%s'", arg), -2;
		o->shards = (unsigned)v;
		return 1;
	default:
		return 0;
	}
}

int pack_common_check(const struct pack_opts *o, const char *cmd)
{
	if (!o->prefix || !*o->prefix)
		return pack_usage(cmd, "%s: -o PREFIX is required", cmd), -2;
	if (o->rps && o->shards)
		return pack_usage(cmd, "%s: give --shards or --records-per-shard, not both",
				  cmd), -2;
	return 0;
}

int pack_exit(int rc)
{
	return rc < 0 ? PACK_BAD : PACK_OK;
}

void pack_report(const pf_error *err)
{
	fprintf(stderr, "pipe-pack: %s\n",
		err->msg[0] ? err->msg : pf_strerror(err->code));
}

double pack_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the sharded output -------------------------------------------------- */

/* Records that shard i takes. */
static uint64_t shard_quota(const struct pack_out *p, unsigned i)
{
	if (p->o->rps) {
		uint64_t first = (uint64_t)i * p->o->rps;

		return p->total - first < p->o->rps ? p->total - first : p->o->rps;
	}
	/* even split: shard i holds [i*T/N, (i+1)*T/N) */
	return (unsigned __int128)p->total * (i + 1) / p->nshards -
	       (unsigned __int128)p->total * i / p->nshards;
}

int pack_out_begin(struct pack_out *p, const struct pack_opts *o,
		   const pf_schema *schema, uint64_t total, pf_error *err)
{
	memset(p, 0, sizeof(*p));
	p->o = o;
	p->schema = *schema;
	p->total = total;
	if (o->rps) {
		uint64_t n = total ? (total - 1) / o->rps + 1 : 1;

		if (n > 99999)
			return pf_error_set(err, PF_ELIMIT,
					    "%" PRIu64 " records at %" PRIu64
					    " per shard make over 99999 shards", total, o->rps);
		p->nshards = (unsigned)n;
	} else {
		p->nshards = o->shards ? o->shards : 1;
	}
	p->t0 = pack_now();
	return 0;
}

static int out_open(struct pack_out *p, pf_error *err)
{
	int rc;

	pf_shard_name(p->name, sizeof(p->name), p->o->prefix, p->cur, p->nshards);
	rc = pf_shard_writer_open(&p->w, p->name, &p->schema, &p->o->w, err);
	if (rc < 0)
		return rc;
	p->cur_left = shard_quota(p, p->cur);
	p->t_shard = pack_now();
	return 0;
}

static int out_close(struct pack_out *p, pf_error *err)
{
	uint64_t recs, raw;
	struct stat st;
	double dt;
	int rc;

	pf_shard_writer_stats(p->w, &recs, &raw, NULL);
	rc = pf_shard_writer_close(p->w, err);
	p->w = NULL;
	if (rc < 0)
		return rc;
	if (stat(p->name, &st) < 0)
		return pf_error_set(err, PF_EIO, "%s: stat: %s", p->name, strerror(errno));
	dt = pack_now() - p->t_shard;
	p->sum_records += recs;
	p->sum_raw += raw;
	p->sum_stored += (uint64_t)st.st_size;
	if (!p->o->quiet)
		printf("%s: %" PRIu64 " records, raw %" PRIu64 " B, stored %" PRIu64
		       " B, ratio %.2f, %.1f MB/s\n",
		       p->name, recs, raw, (uint64_t)st.st_size,
		       st.st_size ? (double)raw / (double)st.st_size : 0.0,
		       dt > 0 ? (double)raw / dt / 1e6 : 0.0);
	p->cur++;
	return 0;
}

int pack_out_add(struct pack_out *p, const void *rec, size_t len, pf_error *err)
{
	int rc;

	while (!p->w || p->cur_left == 0) {
		if (p->w && (rc = out_close(p, err)) < 0)
			return rc;
		if (p->cur >= p->nshards)
			return pf_error_set(err, PF_ESTATE,
					    "more records than the %" PRIu64 " counted", p->total);
		if ((rc = out_open(p, err)) < 0)
			return rc;
	}
	if ((rc = pf_shard_writer_add(p->w, rec, len, err)) < 0)
		return rc;
	p->cur_left--;
	return 0;
}

int pack_out_end(struct pack_out *p, pf_error *err)
{
	double dt;
	int rc;

	/* close the open shard, then write the empty ones left (when fewer
	 * records than shards), so the set is always complete */
	for (;;) {
		if (p->w && (rc = out_close(p, err)) < 0)
			return rc;
		if (p->cur >= p->nshards)
			break;
		if ((rc = out_open(p, err)) < 0)
			return rc;
	}
	if (p->sum_records != p->total)
		return pf_error_set(err, PF_ESTATE,
				    "wrote %" PRIu64 " records, expected %" PRIu64,
				    p->sum_records, p->total);
	dt = pack_now() - p->t0;
	if (!p->o->quiet)
		printf("total: %u shard%s, %" PRIu64 " records, raw %" PRIu64
		       " B, stored %" PRIu64 " B, ratio %.2f, %.1f MB/s\n",
		       p->nshards, p->nshards == 1 ? "" : "s", p->sum_records,
		       p->sum_raw, p->sum_stored,
		       p->sum_stored ? (double)p->sum_raw / (double)p->sum_stored : 0.0,
		       dt > 0 ? (double)p->sum_raw / dt / 1e6 : 0.0);
	return 0;
}

void pack_out_abort(struct pack_out *p)
{
	char name[sizeof(p->name)];

	pf_shard_writer_abort(p->w);
	p->w = NULL;
	/* remove the shards of this run that were already closed */
	for (unsigned i = 0; i < p->cur && p->o; i++) {
		pf_shard_name(name, sizeof(name), p->o->prefix, i, p->nshards);
		unlink(name);
	}
	p->cur = 0;
}

/* ---- main ---------------------------------------------------------------- */

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{ "idx", pack_idx },
	{ "npy", pack_npy },
	{ "raw", pack_raw },
	{ "tfrecord", pack_tfrecord },
	{ "wds", pack_wds },
	{ "verify", pack_verify },
	{ "info", pack_info },
};

int main(int argc, char **argv)
{
	if (argc < 2)
		return pack_usage(NULL, "a command is required");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		pack_usage_full();
		return PACK_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("pipe-pack (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
		return PACK_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	return pack_usage(NULL, "unknown command '%s'", argv[1]);
}
