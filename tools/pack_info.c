/*
 * pack_info.c - `pipe-pack info`: describe one shard without decoding it:
 * header, schema, counts, sizes and the block table from the footer index.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack_common.h"
#include "pf_checksum.h"

#define DEFAULT_BLOCKS 20

int pack_info(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "blocks", required_argument, NULL, OPT_BLOCKS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	uint64_t limit = DEFAULT_BLOCKS, raw;
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
