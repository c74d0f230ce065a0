/*
 * svg_chart.h - small standalone SVG line charts (pipe-stat --svg, the
 * batch-size sweep of pipe-train --sweep --svg).  Internal to tools/.
 */
#ifndef PF_TOOLS_SVG_CHART_H
#define PF_TOOLS_SVG_CHART_H

#include <stddef.h>
#include <stdio.h>

typedef struct svg_series {
	const char *name;           /* legend text (XML-escaped on output) */
	size_t n;
	const double *x, *y;        /* non-finite points are skipped */
} svg_series;

typedef struct svg_panel {
	const char *title, *xlabel, *ylabel;
	int nseries;
	const svg_series *series;
	int log_x;                  /* nonzero: log2 x axis (x > 0) */
	double mark_x;              /* a vertical marker at x (NaN: none) */
	const char *mark_label;
} svg_panel;

/* Write one SVG document of npanels charts stacked vertically.  Returns 0,
 * or -1 when writing to f failed. */
int svg_write(FILE *f, const char *title, int npanels, const svg_panel *p);

#endif /* PF_TOOLS_SVG_CHART_H */
