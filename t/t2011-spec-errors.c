/*
 * t2011-spec-errors: a bad spec fails with PF_ESPEC and a message that
 * names the column and what was expected; nothing is half-parsed.
 */
#include "config.h"

#include "pf_spec.h"
#include "pipefeed.h"
#include "tap.h"

static const struct { const char *what, *spec, *msg; } cases[] = {
	{ "empty spec", "", "column 1: empty spec: expected an op" },
	{ "blank spec", "   \t ", "column 6: empty spec" },
	{ "unknown op (close)", "range(0, 9) | shufle(10)", "column 15: unknown op 'shufle' (did you mean 'shuffle'?)" },
	{ "unknown op (far)", "range(0, 9) | zzzzzzzz", "column 15: unknown op 'zzzzzzzz' (expected one of: shards, tfrecord, webdataset, range, map," },
	{ "missing ')'", "range(0, 9) | shuffle(10 seed=7)", "column 26: expected ',' or ')' after argument of shuffle, got 'seed'" },
	{ "missing ')' at end", "range(0, 9) | batch(64", "column 23: expected ',' or ')' after argument of batch, got end of spec" },
	{ "missing '|'", "range(0, 9) take(3)", "column 13: expected '|' or end of spec after range, got 'take'" },
	{ "trailing garbage", "range(0, 9) | take(3))", "column 22: expected '|' or end of spec after take, got ')'" },
	{ "trailing '|'", "range(0, 9) |", "column 14: expected an op name after '|', got end of spec" },
	{ "bad number", "range(0, 9) | batch(6x4)", "column 21: bad number '6x4'" },
	{ "bad float", "range(0, 9) | map(normalize(mean=1.2.3, std=1))", "column 34: bad number '1.2.3'" },
	{ "number out of range", "range(0, 99999999999999999999)", "column 10: number '99999999999999999999' is out of range" },
	{ "value out of bounds", "range(0, 9) | batch(0)", "column 21: argument 'size' of batch: 0 is out of range (1 to 16777216)" },
	{ "unknown argument name", "range(0, 9) | shuffle(10, sed=7)", "column 27: unknown argument 'sed' for shuffle (expected buffer, seed or reshuffle)" },
	{ "argument on an op without any", "range(0, 9) | shard(2, 0, x=1)", "column 27: unknown argument 'x' for shard (expected num or index)" },
	{ "duplicate argument", "range(0, 9) | shuffle(10, seed=7, seed=8)", "column 35: argument 'seed' of shuffle given twice (first at column 32)" },
	{ "duplicate by position and name", "range(0, 9) | batch(4, size=8)", "column 24: argument 'size' of batch given twice (first at column 21)" },
	{ "wrong type: string for integer", "range(0, 9) | batch(\"64\")", "column 21: argument 'size' of batch: expected an integer, got string \"64\"" },
	{ "wrong type: float for integer", "range(0, 9) | take(1.5)", "column 20: argument 'n' of take: expected an integer, got number 1.5" },
	{ "wrong type: bool", "range(0, 9) | batch(8, drop=yes)", "column 29: argument 'drop' of batch: expected true or false, got 'yes'" },
	{ "wrong type: auto where not allowed", "range(0, 9) | take(auto)", "column 20: argument 'n' of take: expected an integer, got 'auto'" },
	{ "wrong enum", "range(0, 9) | padded_batch(8, max_len=4, over=clip)", "column 47: argument 'over' of padded_batch: expected truncate or reject, got 'clip'" },
	{ "unterminated string", "shards(\"data/x-*.pfs, cycle=4)", "column 8: unterminated string: expected \" before end of spec" },
	{ "bad escape", "shards(\"a\\qb\")", "column 10: unknown escape '\\q' in string" },
	{ "missing required argument", "range(0, 9) | shuffle()", "column 23: shuffle needs argument 'buffer'" },
	{ "missing required argument, no parens", "range(0, 9) | batch", "column 20: batch needs argument 'size'" },
	{ "missing named required argument", "range(0, 9) | padded_batch(8)", "padded_batch needs argument 'max_len'" },
	{ "too many positional", "range(0, 9) | take(1, 2)", "column 23: too many arguments for take (it takes 1 by position)" },
	{ "positional after named", "range(0, 9) | shuffle(seed=1, 10)", "column 31: positional argument after named ones in shuffle" },
	{ "source after the first op", "range(0, 9) | shards(\"x\")", "column 15: shards is a source: it can only be the first op" },
	{ "missing value after '='", "range(0, 9) | shuffle(10, seed=)", "column 32: expected a value after 'seed=' in shuffle, got ')'" },
	{ "missing argument after ','", "range(0, 9) | shuffle(10, )", "column 27: expected an argument of shuffle, got ')'" },
	{ "unexpected character", "range(0, 9) | take(3) ; take(1)", "column 23: unexpected character ';'" },
	{ "binary garbage", "range(0, 9) | \x01", "column 15: unexpected byte 0x01" },
	{ "op name not a word", "(range)", "column 1: expected an op name, got '('" },
	{ "empty list", "shards([])", "column 8: argument 'paths' of shards: empty list" },
	{ "list not closed", "shards([\"a\" \"b\"])", "column 13: expected ',' or ']' after list item in shards" },
	{ "nested too deep", "range(0, 1) | map(a(b(c(d(e(f(1)))))))", "nested too deeply" },
	{ "negative count", "range(0, 9) | repeat(-1)", "column 22: argument 'count' of repeat: -1 is out of range" },
};

#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

int main(void)
{
	for (int i = 0; i < NCASES; i++) {
		pf_spec *s = (pf_spec *)&s;     /* must come back NULL */
		pf_error err = { 0 };
		int rc = pf_spec_parse(&s, cases[i].spec, &err);

		ok(rc == PF_ESPEC && err.code == PF_ESPEC && s == NULL, "%s: PF_ESPEC", cases[i].what);
		like(err.msg, cases[i].msg, "%s: message", cases[i].what);
	}

	/* Builder errors come back with the op's column. */
	{
		pf_pipeline *p;
		pf_error err = { 0 };
		pf_pipeline_new(&p, NULL, NULL);
		int rc = pf_spec_apply(p, "range(0, 9) | shard(2, 5)", &err);
		ok(rc < 0, "shard(2, 5) fails when built");
		like(err.msg, "column 15: shard: index 5 must be below num 2", "  and names column and op");
		pf_pipeline_free(p);

		pf_error_clear(&err);
		pf_pipeline_new(&p, NULL, NULL);
		rc = pf_spec_apply(p, "range(0, 9) | map(no_such_fn)", &err);
		ok(rc < 0, "an unregistered map function fails when built");
		like(err.msg, "column 15: map:", "  message names column and op: %s", err.msg);
		pf_pipeline_free(p);

		pf_error_clear(&err);
		pf_pipeline_new(&p, NULL, NULL);
		rc = pf_spec_apply(p, "take(3)", &err);
		ok(rc == PF_ESPEC, "a spec without a source on an empty pipeline fails");
		like(err.msg, "column 1: a pipeline starts with a source", "  message says why");
		pf_pipeline_free(p);

		pf_error_clear(&err);
		pf_pipeline_new(&p, NULL, NULL);
		rc = pf_spec_apply(p, "range(0, 9) | map(/nonexistent/lib.so:fn)", &err);
		ok(rc == PF_ENOENT, "a missing plugin fails with PF_ENOENT");
		like(err.msg, "/nonexistent/lib.so", "  message names the library");
		pf_pipeline_free(p);
	}

	/* Limits: a very long spec is refused up front, not parsed. */
	{
		size_t n = (64u << 10) + 10;
		char *big = malloc(n + 1);
		memset(big, ' ', n);
		memcpy(big, "range(0, 1)", 11);
		big[n] = '\0';
		pf_spec *s;
		pf_error err = { 0 };
		ok(pf_spec_parse(&s, big, &err) == PF_ELIMIT, "a spec over 64 KiB: PF_ELIMIT");
		free(big);

		char many[4096] = "range(0, 1)";
		for (int k = 0; k < 70; k++)
			strcat(many, " | take(1)");
		pf_error_clear(&err);
		ok(pf_spec_parse(&s, many, &err) == PF_ESPEC, "more than 64 ops: PF_ESPEC");
		like(err.msg, "more than 64 ops", "  message says so");
	}
	return done_testing();
}
