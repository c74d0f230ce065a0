/*
 * tap.h - a tiny TAP producer for the C tests in t/.
 *
 *   plan(3);                       or  plan_skip_all("no CUDA device");
 *   ok(x == 1, "x is one");
 *   is_int(got, want, "count");    diag("..."); skip(n, "why");
 *   return done_testing();         exit 0 when every check passed
 *
 * Each check has a title (git's t/ habit).  A failing check prints what was
 * expected and what came instead, with file:line.
 */
#ifndef PF_TAP_H
#define PF_TAP_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_planned = -1, tap_run, tap_failed;

static inline void plan(int n)
{
	tap_planned = n;
	printf("1..%d\n", n);
	fflush(stdout);
}

static inline void plan_skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	fflush(stdout);
	exit(0);
}

static inline void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void diag(const char *fmt, ...)
{
	va_list ap;
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static inline int ok_at(int cond, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static inline int ok_at(int cond, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	tap_run++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tap_run);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		printf("#   failed at %s:%d\n", file, line);
	fflush(stdout);
	return cond;
}
#define ok(cond, ...) ok_at(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define is_int(got, want, ...)                                                 \
	do {                                                                   \
		long long g_ = (long long)(got), w_ = (long long)(want);       \
		if (!ok(g_ == w_, __VA_ARGS__))                                 \
			diag("  got %lld, want %lld", g_, w_);                 \
	} while (0)

#define is_str(got, want, ...)                                                 \
	do {                                                                   \
		const char *g_ = (got), *w_ = (want);                          \
		if (!ok(g_ && w_ && !strcmp(g_, w_), __VA_ARGS__))             \
			diag("  got \"%s\", want \"%s\"", g_ ? g_ : "(null)",   \
			     w_ ? w_ : "(null)");                              \
	} while (0)

/* ok() that the string contains a substring, e.g. an error naming an offset. */
#define like(got, sub, ...)                                                    \
	do {                                                                   \
		const char *g_ = (got), *s_ = (sub);                           \
		if (!ok(g_ && strstr(g_, s_), __VA_ARGS__))                    \
			diag("  \"%s\" does not contain \"%s\"",               \
			     g_ ? g_ : "(null)", s_);                          \
	} while (0)

static inline void skip(int n, const char *why)
{
	for (int i = 0; i < n; i++) {
		tap_run++;
		printf("ok %d # SKIP %s\n", tap_run, why);
	}
	fflush(stdout);
}

static inline int done_testing(void)
{
	if (tap_planned < 0)
		printf("1..%d\n", tap_run);
	else if (tap_planned != tap_run)
		printf("# planned %d checks but ran %d\n", tap_planned, tap_run);
	fflush(stdout);
	return tap_failed || (tap_planned >= 0 && tap_planned != tap_run);
}

/* A scratch directory under the build tree, removed by `make clean`. */
static inline const char *tap_tmpdir(const char *name)
{
	static char dir[512];
	const char *b = getenv("top_builddir");
	snprintf(dir, sizeof(dir), "%s/t/tmp-%s", b ? b : ".", name);
	char cmd[1100];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", dir, dir);
	if (system(cmd) != 0)
		return NULL;
	return dir;
}

#endif /* PF_TAP_H */
