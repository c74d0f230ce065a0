/*
 * bench_pngs.h - what the PNG benchmarks (formats_bench, png_bench) share:
 * the encoded images of TFRecord files of tf.train.Example, read through
 * pipefeed itself, so each program can time a decoder on them alone.
 */
#ifndef BENCH_PNGS_H
#define BENCH_PNGS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_spec.h"
#include "pipefeed.h"

/*
 * Append the "image" bytes feature of up to max Examples of `files` (the
 * tfrecord() source's argument: a quoted path or pattern list) to the
 * malloc'd arrays *img / *len (*n of them so far; both may start NULL).
 * Returns 0, or -1 after a message on stderr prefixed by `prog`.
 */
static inline int bench_load_pngs(const char *prog, const char *files, size_t max,
				  unsigned char ***img, size_t **len, size_t *n)
{
	size_t sz = strlen(files) + 64, cap = *n;
	char *spec = malloc(sz);
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	pf_error err = { 0 };
	pf_elem e;
	if (!spec)
		return -1;
	snprintf(spec, sz, "tfrecord(%s) | map(parse_example(image=bytes))", files);
	int rc = pf_pipeline_new(&p, NULL, &err);
	if (!rc)
		rc = pf_spec_apply(p, spec, &err);
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	while (!rc && *n < max && (rc = pf_iter_next(it, &e, &err)) == 0) {
		if (*n == cap) {
			cap = cap ? 2 * cap : 1024;
			*img = realloc(*img, cap * sizeof(**img));
			*len = realloc(*len, cap * sizeof(**len));
		}
		(*len)[*n] = (size_t)e.nitems[0];
		(*img)[*n] = malloc((size_t)e.nitems[0]);
		memcpy((*img)[*n], e.data[0], (size_t)e.nitems[0]);
		(*n)++;
		pf_elem_release(&e);
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	free(spec);
	if (rc && rc != PF_END)
		fprintf(stderr, "%s: %s\n", prog, err.msg);
	return rc && rc != PF_END ? -1 : 0;
}

#endif /* BENCH_PNGS_H */
