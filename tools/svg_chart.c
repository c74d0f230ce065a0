/* svg_chart.c - standalone SVG line charts (see svg_chart.h). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "svg_chart.h"

#define W 760
#define PH 260  /* panel height */
#define ML 70   /* margins */
#define MR 170
#define MT 40
#define MB 40

static const char *colors[] = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
				"#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
				"#bcbd22", "#17becf" };

/* Text with &, <, >, " escaped, and bytes that are not printable ASCII
 * replaced by '?' (the names come from files that may be damaged). */
static void xml_text(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '&')
			fputs("&amp;", f);
		else if (c == '<')
			fputs("&lt;", f);
		else if (c == '>')
			fputs("&gt;", f);
		else if (c == '"')
			fputs("&quot;", f);
		else if (c < 0x20 || c >= 0x7f)
			fputc('?', f);
		else
			fputc(c, f);
	}
}

static double tx(const svg_panel *p, double x)
{
	return p->log_x ? (x > 0 ? log2(x) : NAN) : x;
}

static void panel(FILE *f, const svg_panel *p, int y0)
{
	double xmin = INFINITY, xmax = -INFINITY, ymax = 0;
	for (int s = 0; s < p->nseries; s++)
		for (size_t i = 0; i < p->series[s].n; i++) {
			double x = tx(p, p->series[s].x[i]), y = p->series[s].y[i];
			if (!isfinite(x) || !isfinite(y))
				continue;
			xmin = fmin(xmin, x);
			xmax = fmax(xmax, x);
			ymax = fmax(ymax, y);
		}
	if (!(xmin <= xmax)) {
		xmin = 0;
		xmax = 1;
	}
	if (xmax - xmin < 1e-12)
		xmax = xmin + 1;
	if (!(ymax > 0))
		ymax = 1;
	ymax *= 1.08;
	int pw = W - ML - MR, ph = PH - MT - MB;
	fprintf(f, "<g transform=\"translate(0,%d)\">\n", y0);
	fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"15\" font-weight=\"bold\">", ML);
	xml_text(f, p->title);
	fprintf(f, "</text>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n",
		ML, MT, pw, ph);
	for (int k = 0; k <= 4; k++) {
		double v = ymax * k / 4;
		int y = MT + ph - (int)(ph * k / 4);
		fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#eee\"/>"
			"<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">%.3g</text>\n",
			ML, y, ML + pw, y, ML - 4, y + 4, v);
		double xv = xmin + (xmax - xmin) * k / 4;
		int x = ML + pw * k / 4;
		fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%.4g</text>\n",
			x, MT + ph + 15, p->log_x ? exp2(xv) : xv);
	}
	fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">", ML + pw / 2,
		MT + ph + 32);
	xml_text(f, p->xlabel);
	fprintf(f, "</text>\n<text x=\"14\" y=\"%d\" font-size=\"12\" transform=\"rotate(-90 14 %d)\" text-anchor=\"middle\">",
		MT + ph / 2, MT + ph / 2);
	xml_text(f, p->ylabel);
	fputs("</text>\n", f);
	for (int s = 0; s < p->nseries; s++) {
		const svg_series *sr = &p->series[s];
		const char *col = colors[s % (int)(sizeof(colors) / sizeof(colors[0]))];
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" points=\"", col);
		for (size_t i = 0; i < sr->n; i++) {
			double x = tx(p, sr->x[i]), y = sr->y[i];
			if (!isfinite(x) || !isfinite(y))
				continue;
			fprintf(f, "%.1f,%.1f ", ML + pw * (x - xmin) / (xmax - xmin),
				MT + ph - ph * fmin(y, ymax) / ymax);
		}
		fprintf(f, "\"/>\n<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
			"<text x=\"%d\" y=\"%d\" font-size=\"11\">", ML + pw + 10, MT + 16 * s, col,
			ML + pw + 24, MT + 16 * s + 9);
		xml_text(f, sr->name);
		fputs("</text>\n", f);
	}
	double mx = tx(p, p->mark_x);
	if (isfinite(mx) && mx >= xmin && mx <= xmax) {
		double x = ML + pw * (mx - xmin) / (xmax - xmin);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#000\" stroke-dasharray=\"4,3\"/>"
			"<text x=\"%.1f\" y=\"%d\" font-size=\"11\">", x, MT, x, MT + ph, x + 3, MT + 12);
		xml_text(f, p->mark_label);
		fputs("</text>\n", f);
	}
	fputs("</g>\n", f);
}

int svg_write(FILE *f, const char *title, int npanels, const svg_panel *p)
{
	int h = 30 + PH * npanels;
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
		"<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<title>",
		W, h, W, h);
	xml_text(f, title);
	fprintf(f, "</title>\n<text x=\"%d\" y=\"20\" font-size=\"13\">", ML);
	xml_text(f, title);
	fputs("</text>\n", f);
	for (int i = 0; i < npanels; i++)
		panel(f, &p[i], 30 + PH * i);
	fputs("</svg>\n", f);
	return ferror(f) ? -1 : 0;
}
