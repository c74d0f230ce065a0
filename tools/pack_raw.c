/*
 * pack_raw.c - `pipe-pack raw`: files of fixed-size records (already in the
 * record encoding: fields in order, little-endian) into shards.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pack_common.h"
#include "pf_file.h"

#define BATCH_BYTES (1u << 20)

/* Build the schema from the --field texts ("NAME:DTYPE[SHAPE]"), or
 * "record: u8[N]" when there are none; it must describe N-byte records. */
static int raw_schema(pf_schema *s, char **fields, int nf, uint64_t size,
		      pf_error *err)
{
	char text[4096];
	size_t len = 0;
	int64_t rb;
	int rc;

	text[0] = '\0';
	if (nf == 0)
		snprintf(text, sizeof(text), "record: u8[%" PRIu64 "]", size);
	for (int i = 0; i < nf; i++) {
		int k = snprintf(text + len, sizeof(text) - len, "%s%s",
				 i ? ", " : "", fields[i]);

		if (k < 0 || (size_t)k >= sizeof(text) - len)
			return pf_error_set(err, PF_ELIMIT, "--field: schema text too long");
		len += (size_t)k;
	}
	if ((rc = pf_schema_parse(s, text, err)) < 0)
		return rc;
	rb = pf_schema_record_bytes(s);
	if (rb < 0)
		return pf_error_set(err, PF_EINVAL,
				    "--field: raw records need fixed-size fields (no '?')");
	if ((uint64_t)rb != size)
		return pf_error_set(err, PF_EINVAL,
				    "--field: the fields take %" PRId64
				    " bytes, but --record-size is %" PRIu64, rb, size);
	return 0;
}

static int read_full(int fd, const char *path, void *buf, size_t n, uint64_t off,
		     pf_error *err)
{
	size_t got;
	ssize_t k = pf_pread_full(fd, buf, n, off, &got);

	if (k < 0)
		return pf_error_set(err, pf_error_from_errno((int)k),
				    "%s: offset %" PRIu64 ": read: %s",
				    path, off + got, strerror((int)-k));
	if ((size_t)k < n)
		return pf_error_set(err, PF_ETRUNC,
				    "%s: offset %" PRIu64 ": truncated (file shrank?)",
				    path, off + got);
	return 0;
}

int pack_raw(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "record-size", required_argument, NULL, OPT_RECORD_SIZE },
		{ "field", required_argument, NULL, OPT_FIELD },
		PACK_COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	struct pack_opts o = { 0 };
	struct pack_out out = { 0 };
	char *fields[PF_MAX_FIELDS];
	int nf = 0, c, rc = 0, nfiles;
	uint64_t size = 0, total = 0, batch;
	unsigned char *buf = NULL;
	pf_error err = { 0 };
	pf_schema schema;

	while ((c = getopt_long(argc, argv, PACK_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
		if (c == OPT_RECORD_SIZE) {
			if (pack_parse_size(optarg, &size) < 0 || size == 0 ||
			    size > PF_SHARD_MAX_BLOCK_RAW - 8)
				return pack_usage("raw", "raw: --record-size wants 1..%u, not '%s'",
						  PF_SHARD_MAX_BLOCK_RAW - 8, optarg);
		} else if (c == OPT_FIELD) {
			if (nf >= PF_MAX_FIELDS)
				return pack_usage("raw", "raw: at most %d fields", PF_MAX_FIELDS);
			fields[nf++] = optarg;
		} else if ((rc = pack_common_opt(&o, c, optarg)) <= 0) {
			return rc < 0 ? PACK_USAGE : pack_usage("raw", NULL);
		}
	}
	nfiles = argc - optind;
	if (!size)
		return pack_usage("raw", "raw: --record-size N is required");
	if (nfiles == 0)
		return pack_usage("raw", "raw: no input FILE");
	if (pack_common_check(&o, "raw") < 0)
		return PACK_USAGE;
	if ((rc = raw_schema(&schema, fields, nf, size, &err)) < 0) {
		pack_report(&err);
		return PACK_USAGE;
	}

	/* count first: a trailing partial record is an error before anything
	 * is written */
	for (int i = optind; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) < 0) {
			rc = pf_error_set(&err, pf_error_from_errno(-errno), "%s: %s",
					  argv[i], strerror(errno));
			goto fail;
		}
		if (!S_ISREG(st.st_mode)) {
			rc = pf_error_set(&err, PF_EINVAL, "%s: not a regular file", argv[i]);
			goto fail;
		}
		if ((uint64_t)st.st_size % size) {
			uint64_t part = (uint64_t)st.st_size % size;

			rc = pf_error_set(&err, PF_ETRUNC,
					  "%s: offset %" PRIu64 ": trailing partial record of %"
					  PRIu64 " bytes (record size %" PRIu64 ")",
					  argv[i], (uint64_t)st.st_size - part, part, size);
			goto fail;
		}
		total += (uint64_t)st.st_size / size;
	}
	batch = BATCH_BYTES / size ? BATCH_BYTES / size : 1;
	if (!(buf = malloc(batch * size))) {
		rc = pf_error_set(&err, PF_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = pack_out_begin(&out, &o, &schema, total, &err)) < 0)
		goto fail;
	for (int i = optind; i < argc; i++) {
		int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
		struct stat st;
		uint64_t off = 0;

		if (fd < 0 || fstat(fd, &st) < 0) {
			rc = pf_error_set(&err, pf_error_from_errno(-errno), "%s: %s",
					  argv[i], strerror(errno));
			if (fd >= 0)
				close(fd);
			goto fail;
		}
		while (off < (uint64_t)st.st_size) {
			uint64_t n = ((uint64_t)st.st_size - off) / size;

			if (n > batch)
				n = batch;
			rc = read_full(fd, argv[i], buf, (size_t)(n * size), off, &err);
			for (uint64_t r = 0; rc == 0 && r < n; r++)
				rc = pack_out_add(&out, buf + r * size, (size_t)size, &err);
			if (rc < 0) {
				close(fd);
				goto fail;
			}
			off += n * size;
		}
		close(fd);
	}
	if ((rc = pack_out_end(&out, &err)) < 0)
		goto fail;
	goto done;
fail:
	pack_out_abort(&out);
	pack_report(&err);
done:
	free(buf);
	return pack_exit(rc);
}
