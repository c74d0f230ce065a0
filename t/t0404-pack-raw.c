/*
 * t0404-pack-raw: `pipe-pack raw` packs fixed-size records from several
 * files (default schema and --field schemas), and a trailing partial record
 * is an error naming the file and the offset.
 */
#include "config.h"

#include "t0400-pack-util.h"

#define RS 12

int main(void)
{
	static unsigned char a[RS * 30], b[RS * 11 + 5];
	struct pk_recs r;
	int st, good;

	plan(17);
	pk_init("t0404");
	for (size_t i = 0; i < sizeof(a); i++)
		a[i] = (unsigned char)(i * 5 + 1);
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (unsigned char)(i * 3 + 2);
	pk_write(pk_path("a.bin"), a, sizeof(a));
	pk_write(pk_path("b.bin"), b, RS * 11);
	pk_write(pk_path("partial.bin"), b, sizeof(b));

	st = pk_run("raw --record-size %d -o '%s' --shards 4 '%s' '%s'", RS, pk_path("r"),
		    pk_path("a.bin"), pk_path("b.bin"));
	is_int(st, 0, "pack two raw files");
	like(pk_out, "total: 4 shards, 41 records", "41 records in 4 shards");
	ok(pk_read_shards(pk_path("r"), 4, &r) == 0, "shards read back");
	is_str(r.schema, "record: u8[12]", "default schema record: u8[N]");
	good = r.n == 41;
	for (int i = 0; i < 41 && good; i++)
		good = pk_rec_is(&r, (size_t)i, i < 30 ? a + RS * i : b + RS * (i - 30), RS);
	ok(good, "every record, files in order");
	pk_recs_free(&r);

	st = pk_run("raw --record-size %d --field 'x:f32[2]' --field 'y: i16[2]' -o '%s' "
		    "--checksum xxh64 --block-size 1K '%s'", RS, pk_path("f"), pk_path("a.bin"));
	is_int(st, 0, "pack with --field schemas");
	ok(pk_read_shards(pk_path("f"), 1, &r) == 0, "shard read back");
	is_str(r.schema, "x: f32[2], y: i16[2]", "schema from the --field options");
	ok(r.n == 30 && pk_rec_is(&r, 29, a + RS * 29, RS), "30 records, the last one intact");
	pk_recs_free(&r);

	st = pk_run("raw --record-size %d -o '%s' '%s' '%s'", RS, pk_path("bad"),
		    pk_path("a.bin"), pk_path("partial.bin"));
	is_int(st, 1, "trailing partial record: exit 1");
	like(pk_err, "partial.bin: offset 132: trailing partial record of 5 bytes",
	     "partial record: names the file and the offset");
	{
		char name[1024];

		pf_shard_name(name, sizeof(name), pk_path("bad"), 0, 1);
		ok(access(name, F_OK) != 0, "partial record: nothing written");
	}

	st = pk_run("raw --record-size %d --field 'x:f32[4]' -o '%s' '%s'", RS, pk_path("bad2"),
		    pk_path("a.bin"));
	is_int(st, 2, "fields that do not add up to the record size: usage error");
	like(pk_err, "the fields take 16 bytes, but --record-size is 12", "says why");
	st = pk_run("raw -o '%s' '%s'", pk_path("bad3"), pk_path("a.bin"));
	is_int(st, 2, "no --record-size: usage error");
	st = pk_run("raw --record-size 12 --shards 2 --records-per-shard 3 -o '%s' '%s'",
		    pk_path("bad4"), pk_path("a.bin"));
	is_int(st, 2, "--shards with --records-per-shard: usage error");
	st = pk_run("raw --record-size 12 -o '%s' '%s'", pk_path("bad5"), pk_path("nonexistent"));
	is_int(st, 1, "a missing input file: exit 1");
	return done_testing();
}
