/*
 * pf_model_int.h - internal: the pf_model handle, shared by model.c (compute)
 * and checkpoint.c (save/load).
 */
#ifndef PF_MODEL_INT_H
#define PF_MODEL_INT_H

#include "pf_model.h"

#define PF_MODEL_GRAPHS 8

struct pf_model {
	pf_device *dev;
	pf_model_cfg cfg;
	int nlayers;
	size_t nparams;
	size_t woff[PF_MLP_MAX_LAYERS], boff[PF_MLP_MAX_LAYERS]; /* in floats */
	float *params, *grads, *m, *v;     /* device, nparams each */
	float *x0;                         /* device [max_batch, sizes[0]] (u8 input) */
	float *act[PF_MLP_MAX_LAYERS];     /* device [max_batch, sizes[l+1]] */
	float *dact[PF_MLP_MAX_LAYERS];    /* gradients of act */
	void *aux[PF_MLP_MAX_LAYERS];      /* device: hidden layers' ReLU masks
					    * (fused epilogues; NULL when off) */
	int aux_ok[PF_MLP_MAX_LAYERS];     /* host: the last forward wrote aux[l] */
	int fused[2];                      /* host: layers the last training
					    * forward / backward fused */
	double *acc;                       /* device: 2 sets of 3 */
	int32_t *t_dev;                    /* device: Adam step */
	int32_t t_host;
	double rows[2];                    /* host: rows accumulated per set */
	void *lab0;                        /* device [max_batch] int64: a graph's
					    * labels (allocated on first capture) */
	struct {                           /* captured steps (cuda graphs) */
		const void *x, *labels;
		int rows, x_type, label_type;
		pf_graph *g;
	} graphs[PF_MODEL_GRAPHS];
	int ngraphs;
};

/* Set the Adam step (host and device copies); syncs s. */
int pf_model_set_step(pf_model *m, pf_stream *s, int32_t t, pf_error *err);

#endif /* PF_MODEL_INT_H */
