/* op_list.c - the op table: every op's descriptor, in the order of
 * PF_OP_SOURCES in ops/Makemodule.am (pf_op_list.h is made from it). */
#include <string.h>

#include "pf_op.h"

const pf_op_desc *const pf_op_table[] = {
#define PF_OP(name) &pf_op_##name,
#include "pf_op_list.h"
#undef PF_OP
	NULL
};

const pf_op_desc *pf_op_find(const char *kind)
{
	for (int i = 0; kind && pf_op_table[i]; i++)
		if (!strcmp(pf_op_table[i]->kind, kind))
			return pf_op_table[i];
	return NULL;
}

int pf_op_nparams(const pf_op_desc *d)
{
	int n = 0;
	while (n < PF_OP_MAX_PARAMS && d->params[n].name)
		n++;
	return n;
}
