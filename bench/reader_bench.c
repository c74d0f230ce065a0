/*
 * reader_bench - MB/s through pf_reader against a plain read() loop.
 *
 *   reader_bench [FILE [MIB]]      default /tmp/pipefeed-reader-bench.bin, 256
 *
 * Makes FILE (MIB MiB of pseudo-random bytes) if it is missing or has another
 * size, then reads it as 256 KiB extents through the reader (io_uring with
 * queue depth 32, buffered and O_DIRECT, each with and without registered
 * buffers, and the
 * pread backend) and with a sequential read() loop into a 1 MiB buffer.
 * Page cache warm first, then cold: before each cold run the file's pages
 * are dropped (posix_fadvise DONTNEED; echo 1 > /proc/sys/vm/drop_caches is
 * tried too) and mincore() says whether that worked.  Prints the median of 5
 * runs of each.  A benchmark, not a test: it asserts nothing.
 */
#include "config.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pf_reader.h"

int pf__reader_debug(pf_reader *r, const char *key, long value);

#define EXT (256u << 10)
#define RUNS 5

static const char *path = "/tmp/pipefeed-reader-bench.bin";
static size_t fsize = (size_t)256 << 20;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int make_file(void)
{
	struct stat st;
	uint64_t x = 0x243f6a8885a308d3ull;
	uint64_t *buf;
	FILE *fp;

	if (stat(path, &st) == 0 && (size_t)st.st_size == fsize)
		return 0;
	buf = malloc(1u << 20);
	fp = fopen(path, "wb");
	if (!buf || !fp)
		return -1;
	for (size_t done = 0; done < fsize; done += 1u << 20) {
		for (size_t i = 0; i < (1u << 20) / 8; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = x;
		}
		if (fwrite(buf, 1, 1u << 20, fp) != 1u << 20)
			return -1;
	}
	free(buf);
	return fclose(fp);
}

/* Share of the file's pages in the page cache, 0..1. */
static double resident(void)
{
	int fd = open(path, O_RDONLY);
	long pg = sysconf(_SC_PAGESIZE);
	size_t np = (fsize + pg - 1) / pg, in = 0;
	unsigned char *vec = malloc(np);
	void *m = fd >= 0 ? mmap(NULL, fsize, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;

	if (m != MAP_FAILED && vec && mincore(m, fsize, vec) == 0)
		for (size_t i = 0; i < np; i++)
			in += vec[i] & 1;
	if (m != MAP_FAILED)
		munmap(m, fsize);
	if (fd >= 0)
		close(fd);
	free(vec);
	return (double)in / np;
}

static int drop_method; /* 1: fadvise worked, 2: drop_caches worked, 0: neither */

static void drop_cache(void)
{
	int fd = open(path, O_RDONLY);

	if (fd >= 0) {
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	if (resident() < 0.01) {
		drop_method |= 1;
		return;
	}
	FILE *fp = fopen("/proc/sys/vm/drop_caches", "w");
	if (fp) {
		fputs("1\n", fp);
		fclose(fp);
	}
	if (resident() < 0.01)
		drop_method |= 2;
}

static void warm(void)
{
	char *buf = malloc(1u << 20);
	int fd = open(path, O_RDONLY);

	while (fd >= 0 && read(fd, buf, 1u << 20) > 0)
		;
	if (fd >= 0)
		close(fd);
	free(buf);
}

/* One pass with read() into a 1 MiB buffer; seconds. */
static double run_read(void)
{
	char *buf = malloc(1u << 20);
	int fd = open(path, O_RDONLY);
	double t = now();
	size_t total = 0;
	ssize_t n;

	while (fd >= 0 && (n = read(fd, buf, 1u << 20)) > 0)
		total += (size_t)n;
	t = now() - t;
	if (fd >= 0)
		close(fd);
	free(buf);
	return total == fsize ? t : -1;
}

/* One pass through the reader; seconds, -1 on error. */
static double run_reader(int force_pread, int direct, int fixed)
{
	pf_reader_opts o = { .queue_depth = 32, .readahead = 32, .o_direct = direct,
			     .force_pread = force_pread };
	size_t n = fsize / EXT, total = 0;
	pf_extent *e = malloc(n * sizeof(*e));
	pf_reader *r;
	pf_error err = { 0 };
	pf_read rd;
	double t;
	int s;

	for (size_t i = 0; i < n; i++)
		e[i] = (pf_extent){ (uint64_t)i * EXT, EXT, (uint32_t)i };
	t = now();
	if (pf_reader_new(&r, &o, &err) != 0)
		return -1;
	if (pf__reader_debug(r, "fixed", fixed) != 0) {
		pf_reader_free(r);
		return -1;
	}
	s = pf_reader_add_stream(r, path, e, n, &err);
	while (s >= 0 && pf_reader_next(r, s, &rd, &err) == 0) {
		total += rd.len;
		pf_reader_release(r, &rd);
	}
	if (fixed && pf__reader_debug(r, "fixed_reads", 0) < (int)n / 2)
		total = 0; /* registered buffers were not used: do not report */
	pf_reader_free(r);
	t = now() - t;
	free(e);
	if (err.code)
		fprintf(stderr, "reader_bench: %s\n", err.msg);
	return total == fsize ? t : -1;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* mode: 0 read(), 1 pread backend, 2 io_uring, 3 io_uring+fixed, 4 io_uring+O_DIRECT, 5 +fixed */
static void bench(const char *name, int mode, int cold)
{
	double t[RUNS], mbs[RUNS];

	for (int i = 0; i < RUNS; i++) {
		if (cold)
			drop_cache();
		else
			warm();
		t[i] = mode == 0 ? run_read()
		       : run_reader(mode == 1, mode >= 4, mode == 3 || mode == 5);
		mbs[i] = t[i] > 0 ? fsize / 1e6 / t[i] : 0;
	}
	qsort(mbs, RUNS, sizeof(mbs[0]), cmp);
	printf("%-5s %-40s %7.0f MB/s   (runs: %.0f .. %.0f)\n", cold ? "cold" : "warm", name,
	       mbs[RUNS / 2], mbs[0], mbs[RUNS - 1]);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const char *names[] = {
		"read() loop, 1 MiB buffer", "reader, pread backend", "reader, io_uring qd 32",
		"reader, io_uring qd 32, fixed bufs", "reader, io_uring qd 32, O_DIRECT",
		"reader, io_uring qd 32, O_DIRECT+fixed",
	};

	if (argc > 1)
		path = argv[1];
	if (argc > 2)
		fsize = (size_t)strtoul(argv[2], NULL, 10) << 20;
	if (make_file() != 0) {
		fprintf(stderr, "reader_bench: cannot write %s\n", path);
		return 1;
	}
	printf("reader_bench: %s, %zu MiB as %u KiB extents, median of %d runs\n", path,
	       fsize >> 20, EXT >> 10, RUNS);
	for (int cold = 0; cold < 2; cold++)
		for (int m = 0; m < 6; m++)
			bench(names[m], m, cold);
	printf("cold runs dropped the cache with: %s\n",
	       drop_method == 0 ? "nothing worked (cold figures are warm)"
	       : drop_method == 1 ? "posix_fadvise(POSIX_FADV_DONTNEED)"
	       : drop_method == 2 ? "echo 1 > /proc/sys/vm/drop_caches"
				  : "posix_fadvise, and drop_caches when it did not suffice");
	return 0;
}
