/*
 * replay.c - the driver for fuzz targets when libFuzzer is not in use (gcc,
 * or a plain `make check`).  It runs LLVMFuzzerTestOneInput on every file of
 * the given corpus files/directories, then, with -runs=N, on N mutants of
 * them (bit flips, byte sets, truncations, duplications, splices, length-field
 * style 32-bit writes), from a fixed seed (-seed=S) so a failure reproduces.
 * With clang, configure --enable-fuzzing links the same targets against
 * libFuzzer instead, for coverage-guided runs (`make fuzz`).
 *
 * A crash is a crash in either case; under ASan it names the input, and
 * -save=DIR keeps the mutant being run in DIR/current so it can be replayed.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUTS 4096
#define MAX_LEN (1 << 20)

static unsigned char *inputs[MAX_INPUTS];
static size_t lens[MAX_INPUTS];
static int ninputs;

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void load(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		fprintf(stderr, "replay: %s: cannot stat\n", path);
		exit(2);
	}
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *e;
		char sub[4096];
		/* sort-free but stable enough: readdir order only affects which
		 * input a mutant starts from, and every input is replayed as is */
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
			load(sub);
		}
		if (d)
			closedir(d);
		return;
	}
	if (ninputs == MAX_INPUTS || st.st_size > MAX_LEN)
		return;
	FILE *f = fopen(path, "rb");
	unsigned char *b = malloc((size_t)st.st_size + 1);
	if (!f || !b || fread(b, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		fprintf(stderr, "replay: %s: cannot read\n", path);
		exit(2);
	}
	fclose(f);
	inputs[ninputs] = b;
	lens[ninputs++] = (size_t)st.st_size;
}

static size_t mutate(unsigned char *m, size_t n, size_t cap)
{
	int k = 1 + (int)(next() % 4);
	while (k--) {
		size_t at = n ? next() % n : 0;
		switch (next() % 7) {
		case 0: if (n) m[at] ^= (unsigned char)(1u << (next() % 8)); break;
		case 1: if (n) m[at] = (unsigned char)next(); break;
		case 2: n = n ? next() % n : 0; break;                 /* truncate */
		case 3: if (n >= 4) { uint32_t v = (uint32_t)next(); /* length-like values */
			static const uint32_t edge[] = {0, 1, 0x7fffffff, 0xffffffff, 0x80000000, 255, 4096};
			if (next() % 2) v = edge[next() % 7];
			at = next() % (n - 3); memcpy(m + at, &v, 4); } break;
		case 4: { size_t l = n ? next() % (n - at) : 0;         /* duplicate a chunk */
			if (n + l <= cap) { memmove(m + at + l, m + at, n - at); n += l; } } break;
		case 5: if (n) { size_t l = next() % (n - at); memmove(m + at, m + at + l, n - at - l); n -= l; } break;
		case 6: { int j = (int)(next() % (uint64_t)ninputs); /* splice */
			size_t l = lens[j] < n - at ? lens[j] : n - at; memcpy(m + at, inputs[j], l); } break;
		}
	}
	return n;
}

int main(int argc, char **argv)
{
	long runs = 0;
	const char *save = NULL;
	unsigned char *m = malloc(2 * MAX_LEN);
	char cur[4096];

	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "-runs=", 6))
			runs = atol(argv[i] + 6);
		else if (!strncmp(argv[i], "-seed=", 6))
			rng = strtoull(argv[i] + 6, NULL, 0) | 1;
		else if (!strncmp(argv[i], "-save=", 6))
			save = argv[i] + 6;
		else if (argv[i][0] == '-')
			; /* libFuzzer flags we do not know are ignored */
		else
			load(argv[i]);
	}
	if (!ninputs) {
		fprintf(stderr, "replay: no inputs\n");
		return 2;
	}
	for (int i = 0; i < ninputs; i++)
		LLVMFuzzerTestOneInput(inputs[i], lens[i]);
	for (long r = 0; r < runs; r++) {
		int j = (int)(next() % (uint64_t)ninputs);
		size_t n = lens[j];
		memcpy(m, inputs[j], n);
		n = mutate(m, n, 2 * MAX_LEN);
		if (save) {
			snprintf(cur, sizeof(cur), "%s/current", save);
			FILE *f = fopen(cur, "wb");
			if (f) {
				fwrite(m, 1, n, f);
				fclose(f);
			}
		}
		LLVMFuzzerTestOneInput(m, n);
	}
	printf("replay: %d corpus inputs and %ld mutants ran clean\n", ninputs, runs);
	for (int i = 0; i < ninputs; i++)
		free(inputs[i]);
	free(m);
	return 0;
}
