/* t0002-schema: schema text and binary forms, record splitting, hostile input. */
#include "config.h"
#include "tap.h"
#include "pf_schema.h"

int main(void)
{
	pf_schema s, s2;
	pf_error err = {0};
	char buf[256];
	unsigned char bin[1024];
	size_t n;

	is_int(pf_schema_parse(&s, "image: u8[28,28], label: u8, tokens: i32[?]", &err), 0, "parse a 3-field schema");
	is_int(s.nfields, 3, "three fields");
	is_int(pf_field_bytes(&s.fields[0]), 784, "image is 784 bytes");
	is_int(pf_field_bytes(&s.fields[2]), -1, "tokens is variable");
	pf_schema_format(&s, buf, sizeof(buf));
	is_str(buf, "image: u8[28,28], label: u8, tokens: i32[?]", "format round-trips");
	n = pf_schema_encode(&s, bin, sizeof(bin));
	is_int(pf_schema_decode(&s2, bin, n, &err), 0, "binary form decodes");
	ok(!memcmp(&s, &s2, sizeof(s)), "binary form round-trips");

	/* splitting records */
	unsigned char rec[784 + 1 + 4 + 8];
	size_t off[PF_MAX_FIELDS];
	int64_t cnt[PF_MAX_FIELDS];
	memset(rec, 7, sizeof(rec));
	uint32_t two = 2;
	memcpy(rec + 785, &two, 4);
	is_int(pf_schema_split(&s, rec, sizeof(rec), off, cnt, &err), 0, "split a valid record");
	is_int(off[2], 789, "tokens data offset");
	is_int(cnt[2], 2, "tokens count");
	pf_error_clear(&err);
	is_int(pf_schema_split(&s, rec, sizeof(rec) - 1, off, cnt, &err), PF_ECORRUPT, "short record rejected");
	like(err.msg, "tokens", "error names the field");
	uint32_t huge = 0xffffffffu;
	memcpy(rec + 785, &huge, 4);
	pf_error_clear(&err);
	is_int(pf_schema_split(&s, rec, sizeof(rec), off, cnt, &err), PF_ECORRUPT, "hostile count rejected");

	/* errors name the column */
	pf_error_clear(&err);
	ok(pf_schema_parse(&s, "image: u9[2]", &err) < 0, "unknown dtype rejected");
	like(err.msg, "column 8", "error names the column");
	pf_error_clear(&err);
	ok(pf_schema_parse(&s, "a: u8, a: u8", &err) < 0, "duplicate field rejected");
	pf_error_clear(&err);
	ok(pf_schema_parse(&s, "a: u8[1099511627776,1099511627776]", &err) < 0, "overflowing shape rejected");
	pf_error_clear(&err);
	ok(pf_schema_parse(&s, "a: u8[?,?]", &err) < 0, "two variable dims rejected");

	/* hostile binary: every truncation fails cleanly */
	int all = 1;
	n = pf_schema_encode(&s2, bin, sizeof(bin));
	for (size_t k = 0; k < n; k++) {
		pf_error_clear(&err);
		if (pf_schema_decode(&s, bin, k, &err) == 0)
			all = 0;
	}
	ok(all, "every truncated binary schema is rejected");
	return done_testing();
}
