/* registry.c - the process-wide registry of named map functions. */
#include <pthread.h>
#include <string.h>

#include "pf_types.h"
#include "pf_maps.h"

#define REG_MAX 256

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pf_map_def reg[REG_MAX];
static size_t reg_n;

int pf_map_register(const char *name, pf_map_prepare_fn prepare, pf_map_fn fn,
		    void *user, pf_error *err)
{
	size_t len = name ? strlen(name) : 0;
	if (!len || len >= PF_MAP_NAME_MAX || !prepare || !fn)
		return pf_error_set(err, PF_EINVAL,
				    "pf_map_register: need a name (1..%d chars), prepare and fn",
				    PF_MAP_NAME_MAX - 1);
	int rc = 0;
	pthread_mutex_lock(&reg_lock);
	for (size_t i = 0; i < reg_n && !rc; i++)
		if (!strcmp(reg[i].name, name))
			rc = pf_error_set(err, PF_EINVAL,
					  "pf_map_register: \"%s\" is already registered", name);
	if (!rc && reg_n == REG_MAX)
		rc = pf_error_set(err, PF_ELIMIT, "pf_map_register: registry full (%d)",
				  REG_MAX);
	if (!rc) {
		pf_map_def *d = &reg[reg_n];
		memcpy(d->name, name, len + 1);
		d->prepare = prepare;
		d->fn = fn;
		d->user = user;
		/* publish after the entry is complete */
		__atomic_store_n(&reg_n, reg_n + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

const pf_map_def *pf_map_lookup(const char *name)
{
	if (!name)
		return NULL;
	size_t n = __atomic_load_n(&reg_n, __ATOMIC_ACQUIRE);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(reg[i].name, name))
			return &reg[i];
	return NULL;
}

size_t pf_map_count(void)
{
	return __atomic_load_n(&reg_n, __ATOMIC_ACQUIRE);
}

const pf_map_def *pf_map_at(size_t i)
{
	return i < pf_map_count() ? &reg[i] : NULL;
}
