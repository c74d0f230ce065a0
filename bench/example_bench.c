/*
 * example_bench - why parse_example reads tf.train.Example with its own
 * reader (lib/example.c) rather than protobuf-c: the two on the same
 * records, in one run.
 *
 *   example_bench [-r RUNS] [-n RECORDS] [FILE.tfrecord...]
 *
 * Workloads (records made with protobuf-c's own packer, so both readers see
 * what a protobuf library writes):
 *   fmnist  image = 350 bytes (a Fashion-MNIST PNG's size), label = int64
 *   wide    8 features: 2 KiB bytes, 40 bytes, 3 int64 (1, 1, 32 values),
 *           3 float (4, 16, 64 values)
 * For each, RUNS passes (default 7) over RECORDS records (default 20000);
 * each pass times both readers (the thread's CPU time) at the same work:
 * every feature found by key, checked, and its values copied out
 *   pf         pf_example_walk + pf_ex_feature_info/read
 *   protobuf-c tensorflow__example__unpack, the keys looked up in its
 *              entries, the values copied, free_unpacked
 * and prints the medians (ns per record, MB/s) and protobuf-c's time over
 * pf's, median of the per-pass ratios (the machine is shared: pairs cancel
 * its drift).  Every record is parsed by both first and the values
 * compared (a differential check); FILE arguments (TFRecords of Examples,
 * such as the .tfrecord files of t/data/example) are compared too.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pf_example.h"
#include "pf_tfrecord.h"
#include "proto/example.pb-c.h"
#include "bench_median.h"

#define MAXF 8
#define MAXRUNS 64

typedef struct rec {
	uint8_t *p;
	size_t n;
} rec;

/* A record's features as either reader gives them: kind, count, and the
 * values (a checksum of them, for the differential check). */
typedef struct got {
	int kind[MAXF];
	int64_t count[MAXF];
	uint64_t sum[MAXF];
} got;

static const char *keys_fmnist[] = { "image", "label", NULL };
static const char *keys_wide[] = { "image", "text", "label", "cls", "ids", "bbox", "mask",
				   "weights", NULL };
static const char *keys_test[] = { "image", "label", "bbox", "mask", "ids", "image/class",
				   "jpeg", NULL };

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ull;
	return h;
}

/* ---- pf ---- */

struct pf_look {
	const char **keys;
	pf_ex_feature f[MAXF];
	int has[MAXF];
};

static int pf_on(void *user, const char *key, size_t len, const pf_ex_feature *f)
{
	struct pf_look *l = user;
	for (int i = 0; l->keys[i]; i++)
		if (strlen(l->keys[i]) == len && !memcmp(l->keys[i], key, len)) {
			l->f[i] = *f;
			l->has[i] = 1;
		}
	return 0;
}

static int pf_parse(const rec *r, const char **keys, void *scratch, got *g)
{
	struct pf_look l = { .keys = keys };
	if (pf_example_walk(r->p, r->n, pf_on, &l, NULL))
		return -1;
	for (int i = 0; keys[i]; i++) {
		pf_ex_info info = { 0 };
		if (l.has[i] && pf_ex_feature_info(&l.f[i], &info, NULL))
			return -1;
		pf_ex_feature_read(&l.f[i], &info, scratch);
		if (g) {
			g->kind[i] = info.kind;
			g->count[i] = info.count;
			g->sum[i] = 0;
			for (int64_t k = 0; k < info.count; k++) {
				if (info.kind == PF_EX_BYTES) {
					const pf_ex_bytes *b = (const pf_ex_bytes *)scratch + k;
					g->sum[i] = mix(g->sum[i], b->p, b->len);
				} else {
					g->sum[i] = mix(g->sum[i], (char *)scratch + k * (info.kind == PF_EX_FLOAT ? 4 : 8),
							info.kind == PF_EX_FLOAT ? 4 : 8);
				}
			}
		}
	}
	return 0;
}

/* ---- protobuf-c ---- */

static int pbc_parse(const rec *r, const char **keys, void *scratch, got *g)
{
	Tensorflow__Example *ex = tensorflow__example__unpack(NULL, r->n, r->p);
	if (!ex)
		return -1;
	const Tensorflow__Features *fs = ex->features;
	for (int i = 0; keys[i]; i++) {
		const Tensorflow__Feature *f = NULL;
		for (size_t e = 0; fs && e < fs->n_feature; e++)
			if (!strcmp(fs->feature[e]->key, keys[i]))
				f = fs->feature[e]->value; /* the last entry of a key wins */
		int kind = f ? (int)f->kind_case : 0;
		int64_t n = 0;
		uint64_t sum = 0;
		if (kind == 1) {
			n = (int64_t)f->bytes_list->n_value;
			for (int64_t k = 0; k < n; k++) {
				ProtobufCBinaryData *b = &f->bytes_list->value[k];
				((pf_ex_bytes *)scratch)[k] = (pf_ex_bytes){ b->data, b->len };
				if (g)
					sum = mix(sum, b->data, b->len);
			}
		} else if (kind == 2) {
			n = (int64_t)f->float_list->n_value;
			memcpy(scratch, f->float_list->value, (size_t)n * 4);
			if (g)
				for (int64_t k = 0; k < n; k++)
					sum = mix(sum, (char *)scratch + 4 * k, 4);
		} else if (kind == 3) {
			n = (int64_t)f->int64_list->n_value;
			memcpy(scratch, f->int64_list->value, (size_t)n * 8);
			if (g)
				for (int64_t k = 0; k < n; k++)
					sum = mix(sum, (char *)scratch + 8 * k, 8);
		}
		if (g) {
			g->kind[i] = kind;
			g->count[i] = n;
			g->sum[i] = sum;
		}
	}
	tensorflow__example__free_unpacked(ex, NULL);
	return 0;
}

/* ---- records ---- */

static rec pack(Tensorflow__Features__FeatureEntry **ents, size_t n)
{
	Tensorflow__Features fs = TENSORFLOW__FEATURES__INIT;
	Tensorflow__Example ex = TENSORFLOW__EXAMPLE__INIT;
	fs.n_feature = n;
	fs.feature = ents;
	ex.features = &fs;
	rec r;
	r.n = tensorflow__example__get_packed_size(&ex);
	r.p = malloc(r.n);
	tensorflow__example__pack(&ex, r.p);
	return r;
}

/* One record of the workload (fmnist: 0, wide: 1), values from seed s. */
static rec make(int wide, unsigned s)
{
	static uint8_t img[2048], txt[40];
	static int64_t ints[3][32];
	static float flts[3][64];
	static const int nints[3] = { 1, 1, 32 }, nflts[3] = { 4, 16, 64 };
	Tensorflow__Features__FeatureEntry e[MAXF], *pe[MAXF];
	Tensorflow__Feature f[MAXF];
	Tensorflow__BytesList bl[2];
	Tensorflow__Int64List il[3];
	Tensorflow__FloatList fl[3];
	ProtobufCBinaryData bd[2];
	size_t n = 0;
	srand(s);
	for (size_t k = 0; k < sizeof(img); k++)
		img[k] = (uint8_t)rand();
	for (size_t k = 0; k < sizeof(txt); k++)
		txt[k] = (uint8_t)('a' + rand() % 26);
	for (int j = 0; j < 3; j++) {
		for (int k = 0; k < 32; k++)
			ints[j][k] = rand() % (j == 2 ? 100000 : 10);
		for (int k = 0; k < 64; k++)
			flts[j][k] = (float)rand() / (float)RAND_MAX;
	}
	const char **keys = wide ? keys_wide : keys_fmnist;
	for (int i = 0; keys[i]; i++) {
		tensorflow__features__feature_entry__init(&e[n]);
		tensorflow__feature__init(&f[n]);
		e[n].key = (char *)keys[i];
		e[n].value = &f[n];
		if (i < (wide ? 2 : 1)) {
			tensorflow__bytes_list__init(&bl[i]);
			bd[i].data = i ? txt : img;
			bd[i].len = i ? sizeof(txt) : (wide ? sizeof(img) : 350);
			bl[i].n_value = 1;
			bl[i].value = &bd[i];
			f[n].kind_case = TENSORFLOW__FEATURE__KIND_BYTES_LIST;
			f[n].bytes_list = &bl[i];
		} else if (i < (wide ? 5 : 2)) {
			int j = i - (wide ? 2 : 1);
			tensorflow__int64_list__init(&il[j]);
			il[j].n_value = (size_t)nints[j];
			il[j].value = ints[j];
			f[n].kind_case = TENSORFLOW__FEATURE__KIND_INT64_LIST;
			f[n].int64_list = &il[j];
		} else {
			int j = i - 5;
			tensorflow__float_list__init(&fl[j]);
			fl[j].n_value = (size_t)nflts[j];
			fl[j].value = flts[j];
			f[n].kind_case = TENSORFLOW__FEATURE__KIND_FLOAT_LIST;
			f[n].float_list = &fl[j];
		}
		pe[n] = &e[n];
		n++;
	}
	return pack(pe, n);
}

/* Both readers agree on every record?  Returns the disagreements. */
static int differ(const rec *rs, int n, const char **keys, void *scratch)
{
	int bad = 0;
	for (int i = 0; i < n; i++) {
		got a, b;
		memset(&a, 0, sizeof(a));
		memset(&b, 0, sizeof(b));
		int ra = pf_parse(&rs[i], keys, scratch, &a);
		int rb = pbc_parse(&rs[i], keys, scratch, &b);
		if (ra != rb || (ra == 0 && memcmp(&a, &b, sizeof(a)))) {
			if (bad++ < 3)
				fprintf(stderr, "example_bench: record %d: the readers differ (pf %d, protobuf-c %d)\n",
					i, ra, rb);
		}
	}
	return bad;
}

static void bench(const char *name, const rec *rs, int n, const char **keys, int runs,
		  void *scratch)
{
	double tp[MAXRUNS], tc[MAXRUNS], ratio[MAXRUNS];
	size_t bytes = 0;
	for (int i = 0; i < n; i++)
		bytes += rs[i].n;
	for (int k = 0; k < runs; k++) {
		double t0 = cpu_now();
		for (int i = 0; i < n; i++)
			pf_parse(&rs[i], keys, scratch, NULL);
		double t1 = cpu_now();
		for (int i = 0; i < n; i++)
			pbc_parse(&rs[i], keys, scratch, NULL);
		double t2 = cpu_now();
		tp[k] = t1 - t0;
		tc[k] = t2 - t1;
		ratio[k] = tc[k] / tp[k];
	}
	double mp = bench_median(tp, runs), mc = bench_median(tc, runs), mr = bench_median(ratio, runs);
	printf("%-7s %6d rec %5.0f B/rec | pf %7.0f ns/rec %7.0f MB/s | protobuf-c %7.0f ns/rec %7.0f MB/s | protobuf-c/pf %.2fx\n",
	       name, n, (double)bytes / n, mp / n * 1e9, bytes / mp / 1e6, mc / n * 1e9,
	       bytes / mc / 1e6, mr);
}

int main(int argc, char **argv)
{
	int runs = 7, n = 20000, c, bad = 0;
	while ((c = getopt(argc, argv, "r:n:")) != -1) {
		if (c == 'r')
			runs = atoi(optarg);
		else if (c == 'n')
			n = atoi(optarg);
		else {
			fprintf(stderr, "usage: example_bench [-r RUNS] [-n RECORDS] [FILE.tfrecord...]\n");
			return 2;
		}
	}
	if (runs < 1 || runs > MAXRUNS || n < 1)
		return 2;
	void *scratch = malloc(1 << 20);
	rec *rs = calloc((size_t)n, sizeof(*rs));
	for (int w = 0; w < 2; w++) {
		for (int i = 0; i < n; i++)
			rs[i] = make(w, (unsigned)i);
		bad += differ(rs, n, w ? keys_wide : keys_fmnist, scratch);
		bench(w ? "wide" : "fmnist", rs, n, w ? keys_wide : keys_fmnist, runs, scratch);
		for (int i = 0; i < n; i++)
			free(rs[i].p);
	}
	for (int a = optind; a < argc; a++) {
		pf_tfrecord *t;
		pf_error e = { 0 };
		const void *d;
		size_t len;
		int k = 0, fbad = 0;
		if (pf_tfrecord_open(&t, argv[a], &e)) {
			fprintf(stderr, "example_bench: %s\n", e.msg);
			return 1;
		}
		while (pf_tfrecord_next(t, &d, &len, &e) == 0) {
			rec r = { (uint8_t *)d, len };
			fbad += differ(&r, 1, keys_test, scratch);
			k++;
		}
		pf_tfrecord_close(t);
		printf("%s: %d records, the readers agree on %d\n", argv[a], k, k - fbad);
		bad += fbad;
	}
	free(rs);
	free(scratch);
	if (bad)
		printf("example_bench: %d records where the readers differ\n", bad);
	return bad != 0;
}
