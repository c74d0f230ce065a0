/*
 * fuzz_spec - the spec parser on arbitrary bytes: parse; when it parses,
 * the canonical text must parse again to the same canonical text (a
 * round-trip failure traps, so the fuzzer reports it), and building it into
 * a throwaway pipeline must not crash.  Specs that name a plugin
 * ("lib.so:fn") are not built: that would dlopen whatever path the input
 * names.  Never crashes, leaks, or reads out of bounds on bad input.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pf_spec.h"
#include "pipefeed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *canon, *again;
	pf_spec *s = NULL, *s2 = NULL;
	pf_error err = { 0 };
	size_t need;

	if (size > (70u << 10))
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';              /* the parser takes C strings */
	if (pf_spec_parse(&s, text, &err) != 0) {
		/* every failure fills the message; every syntax error names its column */
		if (err.code == 0 || (err.code == PF_ESPEC && strncmp(err.msg, "column ", 7)))
			__builtin_trap();
		free(text);
		return 0;
	}
	need = pf_spec_format(s, NULL, 0);
	canon = malloc(need + 1);
	again = malloc(need + 1);
	if (canon && again) {
		pf_spec_format(s, canon, need + 1);
		if (pf_spec_parse(&s2, canon, &err) != 0)
			__builtin_trap();               /* canonical text must parse */
		if (pf_spec_format(s2, again, need + 1) != need || strcmp(canon, again))
			__builtin_trap();               /* and format to itself */
		if (!strchr(canon, ':')) {
			pf_pipeline *p;
			if (pf_pipeline_new(&p, NULL, NULL) == 0) {
				pf_spec_build(s, p, NULL);
				pf_pipeline_free(p);
			}
		}
	}
	pf_spec_free(s);
	pf_spec_free(s2);
	free(canon);
	free(again);
	free(text);
	return 0;
}
