/* paths.c - plain paths and glob patterns to a sorted list; see pf_paths.h. */
#include "config.h"

#include <glob.h>
#include <stdlib.h>
#include <string.h>

#include "pf_paths.h"

typedef struct plist {
	char **v;
	size_t n, cap;
} plist;

static int add(plist *l, const char *p)
{
	if (l->n == l->cap) {
		size_t c = l->cap ? 2 * l->cap : 16;
		char **nv = realloc(l->v, c * sizeof(*nv));
		if (!nv)
			return PF_ENOMEM;
		l->v = nv;
		l->cap = c;
	}
	if (!(l->v[l->n] = strdup(p)))
		return PF_ENOMEM;
	l->n++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void pf_paths_free(char **paths, size_t n)
{
	if (!paths)
		return;
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}

int pf_paths_expand(const char *const *args, size_t n, char ***out,
		    size_t *nout, pf_error *err)
{
	plist l = { 0 };
	int rc = 0;

	*out = NULL;
	*nout = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		const char *pat = args[i];
		if (!pat) {
			rc = pf_error_set(err, PF_EINVAL, "argument %zu: no path", i);
			break;
		}
		if (!strpbrk(pat, "*?[")) {
			if (add(&l, pat))
				rc = pf_error_set(err, PF_ENOMEM, "%s: out of memory", pat);
			continue;
		}
		glob_t g;
		int grc = glob(pat, 0, NULL, &g);
		if (grc == GLOB_NOMATCH) {
			rc = pf_error_set(err, PF_ENOENT, "%s: no file matches", pat);
			break;
		}
		if (grc) {
			globfree(&g);
			rc = pf_error_set(err, PF_EIO, "%s: glob failed", pat);
			break;
		}
		size_t first = l.n;
		for (size_t k = 0; k < g.gl_pathc && !rc; k++)
			if (add(&l, g.gl_pathv[k]))
				rc = pf_error_set(err, PF_ENOMEM, "%s: out of memory", pat);
		if (!rc)
			qsort(l.v + first, l.n - first, sizeof(char *), cmp_str);
		globfree(&g);
	}
	if (!rc && !l.n)
		rc = pf_error_set(err, PF_EINVAL, "no files given");
	if (rc) {
		pf_paths_free(l.v, l.n);
		return rc;
	}
	*out = l.v;
	*nout = l.n;
	return 0;
}
