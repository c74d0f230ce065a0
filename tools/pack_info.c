/*
 * pack_info.c - `pipe-pack info`: describe one shard without decoding it:
 * header, schema, counts, sizes and the block table from the footer index.
 * A TFRecord file instead: the features of its first Examples (names, list
 * types, value counts) and the --example spec that reads them; of
 * SequenceExamples, the context features, the feature lists (frames,
 * values a frame) and the --sequence-example spec.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack_common.h"
#include "pf_checksum.h"
#include "pf_example.h"
#include "pf_tfrecord.h"

#define DEFAULT_BLOCKS 20

int pack_info(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "blocks", required_argument, NULL, OPT_BLOCKS },
		{ "records", required_argument, NULL, OPT_RECORDS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	uint64_t limit = DEFAULT_BLOCKS, raw, nrec = 10;
	pf_shard *s = NULL;
	pf_error err = { 0 };
	char schema[4096];
	const char *path;
	uint32_t nb;
	int c;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_BLOCKS:
			if (!strcmp(optarg, "all") || !strcmp(optarg, "full"))
				limit = UINT64_MAX;
			else if (pack_parse_u64(optarg, &limit) < 0)
				return pack_usage("info", "info: --blocks wants N or all, not '%s'",
						  optarg);
			break;
		case OPT_RECORDS:
			if (pack_parse_u64(optarg, &nrec) < 0 || !nrec)
				return pack_usage("info", "info: --records wants N >= 1, not '%s'", optarg);
			break;
		case 'h':
			pack_usage_full();
			return PACK_OK;
		default:
			return pack_usage("info", NULL);
		}
	}
	if (argc - optind != 1)
		return pack_usage("info", "info: exactly one shard FILE");
	path = argv[optind];
	if (pf_shard_open(&s, path, 0, &err) < 0) {
		pf_tfrecord *t;
		pf_error e2 = { 0 };
		uint64_t len;
		if (pf_tfrecord_open(&t, path, &e2) == 0 && pf_tfrecord_skip(t, &len, &e2) == 0) {
			pf_tfrecord_close(t); /* a TFRecord file: its Examples */
			return pack_info_tfrecord(path, nrec);
		}
		pf_tfrecord_close(t);
		pack_report(&err);
		return PACK_BAD;
	}
	nb = pf_shard_nblocks(s);
	raw = pf_shard_raw_bytes(s);
	pf_schema_format(pf_shard_schema(s), schema, sizeof(schema));
	printf("file:      %s\n", path);
	printf("format:    pipefeed shard, version %d\n", PF_SHARD_VERSION);
	printf("codec:     %s\n", pf_codec_name(pf_shard_codec(s)) ?
	       pf_codec_name(pf_shard_codec(s)) : "?");
	printf("checksum:  %s\n", pf_checksum_name(pf_shard_checksum_kind(s)) ?
	       pf_checksum_name(pf_shard_checksum_kind(s)) : "?");
	printf("schema:    %s\n", schema);
	printf("records:   %" PRIu64 "\n", pf_shard_nrecords(s));
	printf("blocks:    %" PRIu32 "\n", nb);
	printf("raw:       %" PRIu64 " B\n", raw);
	printf("stored:    %" PRIu64 " B (file)\n", pf_shard_size(s));
	printf("ratio:     %.2f\n",
	       pf_shard_size(s) ? (double)raw / (double)pf_shard_size(s) : 0.0);
	if (nb && limit) {
		printf("%8s %12s %10s %10s %10s %6s %6s\n", "block", "offset", "records",
		       "raw", "stored", "ratio", "codec");
		for (uint32_t b = 0; b < nb && b < limit; b++) {
			const pf_block_info *bi = pf_shard_block(s, b);

			printf("%8" PRIu32 " %12" PRIu64 " %10" PRIu32 " %10" PRIu32
			       " %10" PRIu32 " %6.2f %6s\n", b, bi->offset, bi->nrecords,
			       bi->raw_len, bi->stored_len,
			       bi->stored_len ? (double)bi->raw_len / bi->stored_len : 0.0,
			       pf_codec_name(bi->codec) ? pf_codec_name(bi->codec) : "?");
		}
		if (limit < nb)
			printf("... %" PRIu64 " more blocks (--blocks all shows them)\n",
			       nb - limit);
	}
	pf_shard_close(s);
	return PACK_OK;
}

/* ---- TFRecord files of tf.train.Example ---------------------------------- */

#define INFO_MAX_KEYS 64

struct key_info {
	char key[128];
	int list;                /* a feature list of a SequenceExample */
	pf_ex_kind kind;
	int mixed;               /* its kind differs between records */
	uint64_t seen;           /* records that have it */
	uint64_t last;           /* the record it was last seen in, + 1 */
	int64_t min, max;        /* value counts (a list's: values a frame) */
	int64_t fmin, fmax;      /* a list's frames */
};

struct info_acc {
	struct key_info k[INFO_MAX_KEYS];
	int n, more;
	uint64_t rec;            /* the record being read */
	pf_error err;
};

/* Key (a feature, or with list a feature list) in a: found or added;
 * NULL when the table is full. */
static struct key_info *key_of(struct info_acc *a, const char *key, size_t len, int list)
{
	int i;
	for (i = 0; i < a->n; i++)
		if (a->k[i].list == list && strlen(a->k[i].key) == len && !memcmp(a->k[i].key, key, len))
			return &a->k[i];
	if (a->n == INFO_MAX_KEYS || len >= sizeof(a->k[0].key)) {
		a->more = 1;
		return NULL;
	}
	memset(&a->k[i], 0, sizeof(a->k[i]));
	memcpy(a->k[i].key, key, len);
	a->k[i].list = list;
	a->k[i].min = a->k[i].fmin = INT64_MAX;
	a->n++;
	return &a->k[i];
}

/* One value kind and count into k (a feature, or a frame of a list). */
static void tally(struct key_info *k, const pf_ex_info *in)
{
	if (in->kind == PF_EX_NONE)
		return;
	if (k->kind == PF_EX_NONE)
		k->kind = in->kind;
	else if (k->kind != in->kind)
		k->mixed = 1;
	k->min = in->count < k->min ? in->count : k->min;
	k->max = in->count > k->max ? in->count : k->max;
}

static int info_entry(void *user, const char *key, size_t len, const pf_ex_feature *f)
{
	struct info_acc *a = user;
	pf_ex_info in;
	if (pf_ex_feature_info(f, &in, &a->err))
		return a->err.code;
	struct key_info *k = key_of(a, key, len, 0);
	/* no list: parse_example's "missing"; a key again in one record: counted once */
	if (!k || in.kind == PF_EX_NONE || k->last == a->rec + 1)
		return 0;
	k->last = a->rec + 1;
	k->seen++;
	tally(k, &in);
	return 0;
}

static int info_list(void *user, const char *key, size_t len, const pf_ex_list *l)
{
	struct info_acc *a = user;
	struct key_info *k = key_of(a, key, len, 1);
	pf_ex_feature fr;
	pf_ex_info in;
	size_t pos = 0;
	int64_t nf = 0;
	int rc;
	while ((rc = pf_ex_list_next(l, &pos, &fr, &a->err)) == 1) {
		if (pf_ex_feature_info(&fr, &in, &a->err))
			return a->err.code;
		if (k)
			tally(k, &in);
		nf++;
	}
	if (rc < 0)
		return rc;
	if (!k || k->last == a->rec + 1)
		return 0;
	k->last = a->rec + 1;
	k->seen++;
	k->fmin = nf < k->fmin ? nf : k->fmin;
	k->fmax = nf > k->fmax ? nf : k->fmax;
	return 0;
}

/* One --example / --sequence-example entry for k: NAME=TYPE[SHAPE](...),
 * or "" when no one field reads it. */
static void suggest(const struct key_info *k, uint64_t nrec, char *buf, size_t cap)
{
	char name[128], shape[48] = "", opt[200] = "";
	size_t j = 0;
	int bytes = k->kind == PF_EX_BYTES, fixed = k->min == k->max && (bytes || k->max > 0);
	buf[0] = '\0';
	if (k->mixed || k->kind == PF_EX_NONE || (k->list && bytes && k->max > 1))
		return; /* no frame holds several strings: bytes[?, ?] is not read */
	for (const char *p = k->key; *p && j + 1 < sizeof(name) && j + 1 < PF_FIELD_NAME_MAX; p++)
		name[j++] = (char)((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				   (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ? *p : '_');
	name[j] = '\0';
	if (strcmp(name, k->key))
		snprintf(opt, sizeof(opt), "key=\"%s\"", k->key);
	if (k->list) { /* frames first: T[?] one value a frame, T[?, N], T[?, ?] */
		snprintf(shape, sizeof(shape), bytes || (fixed && k->max == 1) ? "[?]" :
			 fixed ? "[?, %lld]" : "[?, ?]", (long long)k->max);
		snprintf(opt + strlen(opt), sizeof(opt) - strlen(opt), "%sseq%s", opt[0] ? ", " : "",
			 k->seen < nrec && (bytes || fixed) ? ", allow_missing=true" : "");
	} else if (!fixed || (bytes && k->seen < nrec && k->max != 1)) {
		snprintf(shape, sizeof(shape), "[?]");
	} else if (k->max != 1) {
		snprintf(shape, sizeof(shape), "[%lld]", (long long)k->max);
	}
	if (!k->list && k->seen < nrec && !bytes && strcmp(shape, "[?]"))
		snprintf(opt + strlen(opt), sizeof(opt) - strlen(opt), "%sdefault=0", opt[0] ? ", " : "");
	snprintf(buf, cap, "%s=%s%s%s%s%s", name,
		 bytes ? "bytes" : k->kind == PF_EX_FLOAT ? "f32" : "i64", shape,
		 opt[0] ? "(" : "", opt, opt[0] ? ")" : "");
}

int pack_info_tfrecord(const char *path, uint64_t nrec)
{
	struct info_acc a = { .n = 0 };
	pf_tfrecord *t = NULL;
	pf_error err = { 0 };
	const void *d;
	size_t len;
	uint64_t n = 0;
	int rc = pf_tfrecord_open(&t, path, &err);
	while (!rc && n < nrec && (rc = pf_tfrecord_next(t, &d, &len, &err)) == 0) {
		memset(&a.err, 0, sizeof(a.err));
		a.rec = n;
		if (pf_seq_example_walk(d, len, info_entry, info_list, &a, &a.err)) {
			printf("file:      %s\nformat:    TFRecord; record %" PRIu64 " is not a tf.train.Example or SequenceExample (%s):\n"
			       "           read it raw (pipe-pack tfrecord without --example)\n",
			       path, n, a.err.msg);
			pf_tfrecord_close(t);
			return PACK_OK;
		}
		n++;
	}
	pf_tfrecord_close(t);
	if (rc < 0 && rc != PF_END) {
		pack_report(&err);
		return PACK_BAD;
	}
	int lists = 0;
	for (int i = 0; i < a.n; i++)
		lists |= a.k[i].list;
	printf("file:      %s\n", path);
	printf("format:    TFRecord of tf.train.%s (the first %" PRIu64 " records read)\n",
	       lists ? "SequenceExample" : "Example", n);
	printf("%-32s %-10s %8s %8s %8s%s\n", lists ? "context feature" : "feature", "type", "records",
	       "min", "max", lists ? "   (feature lists below)" : "");
	char spec[4096] = "", one[300];
	for (int l = 0; l < 2; l++) {
		if (l && lists)
			printf("%-32s %-10s %8s %8s %8s %8s %8s   (frames, values a frame: min max)\n",
			       "feature list", "type", "records", "min", "max", "min", "max");
		for (int i = 0; i < a.n; i++) {
			const struct key_info *k = &a.k[i];
			if (k->list != l)
				continue;
			printf("%-32s %-10s %8" PRIu64, k->key, k->mixed ? "mixed" : pf_ex_kind_name(k->kind),
			       k->seen);
			if (l)
				printf(" %8lld %8lld", (long long)(k->seen ? k->fmin : 0), (long long)k->fmax);
			printf(" %8lld %8lld%s\n", (long long)(k->min == INT64_MAX ? 0 : k->min),
			       (long long)k->max, k->mixed ? "  (list type differs between records)" : "");
			suggest(k, n, one, sizeof(one));
			if (one[0])
				snprintf(spec + strlen(spec), sizeof(spec) - strlen(spec), "%s%s",
					 spec[0] ? "," : "", one);
		}
	}
	if (a.more)
		printf("... more than %d features: the first %d shown\n", INFO_MAX_KEYS, INFO_MAX_KEYS);
	if (spec[0])
		printf("example:   --%s '%s'\n", lists ? "sequence-example" : "example", spec);
	return PACK_OK;
}
