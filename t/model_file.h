/*
 * model_file.h - a model file for the serving tests: what pipe-train --save
 * writes, made on the cpu backend from a spec.  Include after tap.h.
 *
 *   save_model(path, "mlp:64-32-10", max_batch)   0, or the error (diag'd)
 */
#ifndef PF_T_MODEL_FILE_H
#define PF_T_MODEL_FILE_H

#include "pf_device.h"
#include "pf_model.h"

static int save_model(const char *path, const char *spec, int max_batch)
{
	pf_device *d = NULL;
	pf_model *m = NULL;
	pf_stream *s = NULL;
	pf_error err = { 0 };
	pf_model_cfg cfg = { 0 };
	int rc;
	cfg.max_batch = max_batch;
	cfg.seed = 42;
	if ((rc = pf_model_parse(&cfg, spec, &err)) < 0 ||
	    (rc = pf_device_open(&d, "cpu", NULL, &err)) < 0 ||
	    (rc = pf_model_new(&m, d, &cfg, &err)) < 0 ||
	    (rc = pf_stream_new(d, &s, &err)) < 0 ||
	    (rc = pf_model_save(m, s, path, &err)) < 0)
		diag("saving %s: %s", path, err.msg);
	pf_stream_free(d, s);
	pf_model_free(m);
	pf_device_close(d);
	return rc;
}

#endif
