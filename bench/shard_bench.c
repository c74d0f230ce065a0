/*
 * shard_bench - how fast shards are read and decoded, against the limits.
 *
 *   shard_bench [-r RUNS] [-t THREADS] [--cold] SHARD...
 *
 * On the same files, medians of RUNS runs (default 5):
 *   seq-read   plain read() of the files, 1 MiB buffer (the disk/page-cache limit)
 *   verify     pf_shard_read_block on every block: read + checksum + decode,
 *              1 thread and THREADS threads (default: online CPUs)
 *   zstd       ZSTD_decompressDCtx of the same payloads already in memory, 1
 *              thread: zstd's own decode rate per core (the CPU limit)
 *   crc        the block checksum alone over the stored bytes, 1 thread
 * Rates are decoded (raw) MB/s unless marked stored.  --cold drops the files
 * from the page cache (posix_fadvise DONTNEED) before each I/O run.
 */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zstd.h>

#include "pf_checksum.h"
#include "pf_shard.h"
#include "bench_median.h"

static int nfiles;
static pf_shard **shards;
static int cold;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void drop_cache(void)
{
	for (int i = 0; i < nfiles; i++) {
		int fd = open(pf_shard_path(shards[i]), O_RDONLY);
		if (fd >= 0) {
			fdatasync(fd);
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			close(fd);
		}
	}
}

static double run_seq_read(void)
{
	static char buf[1 << 20];
	double t = now();
	for (int i = 0; i < nfiles; i++) {
		int fd = open(pf_shard_path(shards[i]), O_RDONLY);
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		close(fd);
	}
	return now() - t;
}

/* Work list: every (file, block), handed out by an atomic counter. */
struct job { int f; uint32_t b; };
static struct job *jobs;
static size_t njobs;
static size_t next_job;

static void *verify_worker(void *arg)
{
	pf_decoder *d = pf_decoder_new();
	pf_block b;
	pf_error err = {0};
	pf_block_init(&b);
	for (;;) {
		size_t j = __atomic_fetch_add(&next_job, 1, __ATOMIC_RELAXED);
		if (j >= njobs)
			break;
		if (pf_shard_read_block(shards[jobs[j].f], jobs[j].b, d, &b, &err)) {
			fprintf(stderr, "shard_bench: %s\n", err.msg);
			exit(1);
		}
	}
	pf_block_free(&b);
	pf_decoder_free(d);
	(void)arg;
	return NULL;
}

static double run_verify(int threads)
{
	pthread_t th[64];
	double t = now();
	next_job = 0;
	for (int i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, verify_worker, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	return now() - t;
}

/* The payloads in memory, for the pure-CPU rates. */
static unsigned char **payload;
static uint32_t *plen, *rlen;
static unsigned char *codecs;

static double run_zstd(void)
{
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	unsigned char *out = malloc(PF_SHARD_MAX_BLOCK_RAW / 64);
	double t = now();
	for (size_t j = 0; j < njobs; j++) {
		if (codecs[j] != PF_CODEC_ZSTD)
			memcpy(out, payload[j], plen[j]);
		else if (ZSTD_isError(ZSTD_decompressDCtx(dc, out, rlen[j], payload[j], plen[j])))
			exit(1);
	}
	t = now() - t;
	free(out);
	ZSTD_freeDCtx(dc);
	return t;
}

static int checksum_kind;
static double run_crc(void)
{
	volatile uint64_t sink = 0;
	double t = now();
	for (size_t j = 0; j < njobs; j++)
		sink += pf_checksum(checksum_kind, payload[j], plen[j]);
	(void)sink;
	return now() - t;
}

int main(int argc, char **argv)
{
	int runs = 5, threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t raw = 0, stored = 0, records = 0;
	pf_error err = {0};
	double v[64];
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-r") && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--cold"))
			cold = 1;
		else {
			fprintf(stderr, "usage: shard_bench [-r RUNS] [-t THREADS] [--cold] SHARD...\n");
			return 2;
		}
	}
	if (runs < 1 || runs > 64 || threads < 1 || threads > 64 || i == argc) {
		fprintf(stderr, "usage: shard_bench [-r RUNS(1..64)] [-t THREADS(1..64)] [--cold] SHARD...\n");
		return 2;
	}
	nfiles = argc - i;
	shards = calloc((size_t)nfiles, sizeof(*shards));
	for (int f = 0; f < nfiles; f++) {
		if (pf_shard_open(&shards[f], argv[i + f], 0, &err)) {
			fprintf(stderr, "shard_bench: %s\n", err.msg);
			return 1;
		}
		njobs += pf_shard_nblocks(shards[f]);
		raw += pf_shard_raw_bytes(shards[f]);
		stored += pf_shard_size(shards[f]);
		records += pf_shard_nrecords(shards[f]);
		checksum_kind = pf_shard_checksum_kind(shards[f]);
	}
	jobs = calloc(njobs, sizeof(*jobs));
	payload = calloc(njobs, sizeof(*payload));
	plen = calloc(njobs, sizeof(*plen));
	rlen = calloc(njobs, sizeof(*rlen));
	codecs = calloc(njobs, 1);
	size_t j = 0;
	for (int f = 0; f < nfiles; f++)
		for (uint32_t b = 0; b < pf_shard_nblocks(shards[f]); b++, j++) {
			const pf_block_info *bi = pf_shard_block(shards[f], b);
			unsigned char hdr[PF_SHARD_BLOCK_HEADER_SIZE];
			int fd = pf_shard_fd(shards[f]);
			jobs[j] = (struct job){f, b};
			plen[j] = bi->stored_len;
			rlen[j] = bi->raw_len;
			payload[j] = malloc(bi->stored_len + 1);
			if (pread(fd, hdr, sizeof(hdr), (off_t)bi->offset) != (ssize_t)sizeof(hdr) ||
			    pread(fd, payload[j], bi->stored_len, (off_t)(bi->offset + sizeof(hdr))) != (ssize_t)bi->stored_len)
				return 1;
			codecs[j] = hdr[4];
		}

	printf("shard_bench: %d files, %zu blocks, %llu records, %.1f MB raw, %.1f MB stored (ratio %.2f), %s cache, median of %d\n",
	       nfiles, njobs, (unsigned long long)records, raw / 1e6, stored / 1e6,
	       (double)raw / (double)stored, cold ? "cold" : "warm", runs);
	run_seq_read(); /* warm up */
#define MEASURE(label, expr, bytes, note)                                                   \
	do {                                                                                \
		for (int r_ = 0; r_ < runs; r_++) {                                         \
			if (cold)                                                           \
				drop_cache();                                               \
			v[r_] = (expr);                                                     \
		}                                                                           \
		double m_ = bench_median(v, runs);                                                \
		printf("  %-22s %9.1f MB/s  %9.2f Mrec/s  %s\n", label, (bytes) / m_ / 1e6,  \
		       records / m_ / 1e6, note);                                           \
	} while (0)
	MEASURE("seq-read (stored)", run_seq_read(), (double)stored, "plain read(), 1 MiB buffer");
	MEASURE("verify 1 thread", run_verify(1), (double)raw, "read + checksum + decode");
	char note[64];
	snprintf(note, sizeof(note), "read + checksum + decode, %d threads", threads);
	MEASURE("verify N threads", run_verify(threads), (double)raw, note);
	int save = cold;
	cold = 0;
	MEASURE("zstd decode 1 core", run_zstd(), (double)raw, "ZSTD_decompressDCtx, in memory");
	MEASURE("checksum 1 core (stored)", run_crc(), (double)stored, pf_checksum_name(checksum_kind));
	cold = save;
	for (int f = 0; f < nfiles; f++)
		pf_shard_close(shards[f]);
	return 0;
}
