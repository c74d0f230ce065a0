/*
 * t0004-shard-damage: a flipped byte in each region (header, schema, block
 * data, index, footer) and truncation are detected, with the right offset in
 * the message; every single-byte flip anywhere in a shard is detected; a
 * newer version is refused by name; PF_SHARD_OPEN_SCAN recovers the intact
 * blocks of a truncated file.
 */
#include "config.h"
#include "tap.h"
#include "shard_util.h"
#include "pf_checksum.h"
#include "pf_shard.h"

/* Open from memory and decode every block; 0 when all is well. */
static int check_all(const unsigned char *buf, size_t len, int flags, pf_error *err, uint64_t *nrec)
{
	pf_shard *s;
	pf_decoder *d = pf_decoder_new();
	pf_block b;
	int rc;

	pf_error_clear(err);
	pf_block_init(&b);
	rc = pf_shard_open_mem(&s, buf, len, "x.pfs", flags, err);
	if (rc == 0) {
		uint64_t r = 0;
		for (uint32_t i = 0; i < pf_shard_nblocks(s) && !rc; i++) {
			rc = pf_shard_read_block(s, i, d, &b, err);
			for (uint32_t j = 0; !rc && j < b.nrecords; j++, r++) {
				size_t l;
				unsigned char want[64];
				const void *p = pf_block_record(&b, j, &l);
				tu_record(r, want, 20);
				if (l != 20 || memcmp(p, want, 20))
					rc = pf_error_set(err, PF_ECORRUPT, "record %llu differs", (unsigned long long)r);
			}
		}
		if (nrec)
			*nrec = r;
		pf_shard_close(s);
	}
	pf_block_free(&b);
	pf_decoder_free(d);
	return rc;
}

int main(void)
{
	const char *dir = tap_tmpdir("t0004");
	char path[600], want[128];
	pf_shard_write_opts o = {.block_size = 256};
	pf_shard_writer *w;
	pf_shard *s;
	pf_schema sch;
	pf_error err = {0};
	unsigned char rec[20], *file, *copy;
	size_t len;
	uint64_t nrec;

	snprintf(path, sizeof(path), "%s/d.pfs", dir);
	pf_schema_parse(&sch, "x: u8[20]", &err);
	pf_shard_writer_open(&w, path, &sch, &o, &err);
	for (int r = 0; r < 30; r++) {
		tu_record((uint64_t)r, rec, 20);
		pf_shard_writer_add(w, rec, 20, &err);
	}
	is_int(pf_shard_writer_close(w, &err), 0, "write a 3-block shard");
	file = tu_slurp(path, &len);
	copy = malloc(len);
	is_int(check_all(file, len, 0, &err, &nrec), 0, "intact shard reads back");
	is_int(nrec, 30, "30 records");
	pf_shard_open(&s, path, 0, &err);
	is_int(pf_shard_nblocks(s), 3, "3 blocks");
	const pf_block_info b1 = *pf_shard_block(s, 1);
	uint64_t index_off = len - PF_SHARD_FOOTER_SIZE - 3 * PF_SHARD_INDEX_ENTRY_SIZE;
	pf_shard_close(s);

	struct { const char *region; size_t at; int code; const char *offset; } cases[] = {
		{"header flags", 12, PF_ECORRUPT, "offset 0: header checksum"},
		{"schema", PF_SHARD_HEADER_SIZE + 3, PF_ECORRUPT, "offset 0: header checksum"},
		{"block 1 data", b1.offset + PF_SHARD_BLOCK_HEADER_SIZE + 5, PF_ECORRUPT, NULL},
		{"block 1 header", b1.offset + 9, PF_ECORRUPT, NULL},
		{"index", index_off + 40, PF_ECORRUPT, NULL},
		{"footer", len - 20, PF_ECORRUPT, NULL},
		{"footer magic", len - 3, PF_ETRUNC, NULL},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		memcpy(copy, file, len);
		copy[cases[k].at] ^= 0x40;
		int rc = check_all(copy, len, 0, &err, NULL);
		is_int(rc, cases[k].code, "flipped byte in %s detected (%s)", cases[k].region, err.msg);
		if (cases[k].offset)
			snprintf(want, sizeof(want), "%s", cases[k].offset);
		else if (!strncmp(cases[k].region, "block", 5))
			snprintf(want, sizeof(want), "block 1 at offset %llu", (unsigned long long)b1.offset);
		else if (!strcmp(cases[k].region, "index"))
			snprintf(want, sizeof(want), "offset %llu: index checksum", (unsigned long long)index_off);
		else
			snprintf(want, sizeof(want), "offset %llu", (unsigned long long)(len - PF_SHARD_FOOTER_SIZE));
		like(err.msg, want, "message for %s names the offset", cases[k].region);
		like(err.msg, "x.pfs", "message for %s names the file", cases[k].region);
	}

	/* every single-byte flip anywhere is detected */
	size_t missed = 0;
	for (size_t i = 0; i < len; i++)
		for (int bit = 0; bit < 8; bit += 7) {
			memcpy(copy, file, len);
			copy[i] ^= (unsigned char)(1u << bit);
			if (check_all(copy, len, 0, &err, NULL) == 0) {
				if (!missed)
					diag("flip of bit %d at offset %zu not detected", bit, i);
				missed++;
			}
		}
	is_int(missed, 0, "all %zu x 2 single-bit flips detected", len);

	/* truncation: never opens as complete; scan recovers the intact prefix */
	size_t trunc_missed = 0, scan_bad = 0;
	for (size_t l = 0; l < len; l++) {
		if (check_all(file, l, 0, &err, NULL) == 0)
			trunc_missed++;
		if (check_all(file, l, PF_SHARD_OPEN_SCAN, &err, &nrec) == 0 && nrec > 30)
			scan_bad++;
	}
	is_int(trunc_missed, 0, "every truncation is refused without scan");
	is_int(scan_bad, 0, "scan never invents records");
	size_t cut = (size_t)(b1.offset + PF_SHARD_BLOCK_HEADER_SIZE + b1.stored_len + 7);
	is_int(check_all(file, cut, PF_SHARD_OPEN_SCAN, &err, &nrec), 0, "truncated mid-block-2 opens with scan");
	is_int(nrec, 20, "scan keeps the 2 intact blocks (20 records)");
	pf_error_clear(&err);
	is_int(pf_shard_open_mem(&s, file, cut, "x.pfs", 0, &err), PF_ETRUNC, "without scan: PF_ETRUNC");
	like(err.msg, "truncated", "message says truncated");
	pf_shard_open_mem(&s, file, cut, "x.pfs", PF_SHARD_OPEN_SCAN, &err);
	uint64_t lost;
	ok(pf_shard_recovered(s, &lost) && lost == b1.offset + PF_SHARD_BLOCK_HEADER_SIZE + b1.stored_len,
	   "recovered() reports the first lost byte (%llu)", (unsigned long long)lost);
	pf_shard_close(s);

	/* a newer version is refused by name, even with a valid header checksum */
	memcpy(copy, file, len);
	copy[8] = 2;
	uint32_t slen = copy[16] | copy[17] << 8;
	uint32_t c = pf_crc32c(pf_crc32c(0, copy, 32), copy + PF_SHARD_HEADER_SIZE, slen);
	for (int i = 0; i < 4; i++)
		copy[32 + i] = (unsigned char)(c >> (8 * i));
	is_int(check_all(copy, len, 0, &err, NULL), PF_EVERSION, "version 2 refused");
	like(err.msg, "version 2", "message names the version");
	is_int(check_all((const unsigned char *)"hello world, not a shard at all, no sir, not at all", 50, 0, &err, NULL),
	       PF_EFORMAT, "a foreign file is refused");
	like(err.msg, "not a pipefeed shard", "message says what it is not");
	pf_error_clear(&err);
	is_int(pf_shard_open(&s, "/nonexistent/x.pfs", 0, &err), PF_ENOENT, "missing file: PF_ENOENT");
	like(err.msg, "/nonexistent/x.pfs", "message names the path");
	free(file);
	free(copy);
	return done_testing();
}
