/*-------------------------------------------------------------------------
 *
 * xmlextract.c
 *		Typed values out of metadata by XPath: meta_text(), meta_int() and
 *		meta_date(), for indexes and queries over document metadata.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/xml.h"

#include "xmlmeta.h"

/*
 * Register the prefix map given as text[][] pairs {{prefix, uri}, ...}.
 */
static void
register_namespaces(xmlXPathContextPtr xpc, ArrayType *nsmap)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	if (nsmap == NULL)
		return;
	if (ARR_NDIM(nsmap) == 0)
		return;
	if (ARR_NDIM(nsmap) != 2 || ARR_DIMS(nsmap)[1] != 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("namespace map must be a two-dimensional array of {prefix, uri} pairs")));
	deconstruct_array(nsmap, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i += 2)
	{
		if (nulls[i] || nulls[i + 1])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("namespace map must not contain NULLs")));
		if (xmlXPathRegisterNs(xpc, (xmlChar *) TextDatumGetCString(elems[i]),
							   (xmlChar *) TextDatumGetCString(elems[i + 1])) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("could not register namespace prefix \"%s\"",
							TextDatumGetCString(elems[i]))));
	}
}

/*
 * The string value of the first node an XPath selects (or the value of a
 * string/number/boolean expression); NULL when it selects nothing.
 */
static char *
first_match(xmltype *x, text *xpath, ArrayType *nsmap)
{
	PgXmlErrorContext *xcxt;
	xmlDocPtr volatile doc = NULL;
	xmlXPathContextPtr volatile xpc = NULL;
	xmlXPathCompExprPtr volatile comp = NULL;
	xmlXPathObjectPtr volatile res = NULL;
	char	   *volatile result = NULL;
	char	   *expr = text_to_cstring(xpath);

	if (*expr == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("XPath expression must not be empty")));
	xcxt = pg_xml_init(PG_XML_STRICTNESS_ALL);
	PG_TRY();
	{
		doc = tv_xml_parse(xcxt, x, "metadata");
		xpc = xmlXPathNewContext(doc);
		if (xpc == NULL)
			xml_ereport(xcxt, ERROR, ERRCODE_OUT_OF_MEMORY, "could not create an XPath context");
		register_namespaces(xpc, nsmap);
		comp = xmlXPathCtxtCompile(xpc, (xmlChar *) expr);
		if (comp == NULL || pg_xml_error_occurred(xcxt))
			xml_ereport(xcxt, ERROR, ERRCODE_INVALID_PARAMETER_VALUE,
						psprintf("invalid XPath expression \"%s\"", expr));
		tv_xpath_budget(xpc);
		res = xmlXPathCompiledEval(comp, xpc);
		tv_xpath_check_budget(xpc);
		if (res == NULL || pg_xml_error_occurred(xcxt))
			xml_ereport(xcxt, ERROR, ERRCODE_INVALID_PARAMETER_VALUE,
						psprintf("invalid XPath expression \"%s\"", expr));
		if (res->type == XPATH_NODESET)
		{
			if (res->nodesetval && res->nodesetval->nodeNr > 0)
			{
				xmlChar    *s = xmlXPathCastNodeToString(res->nodesetval->nodeTab[0]);

				result = pstrdup((const char *) s);
				xmlFree(s);
			}
		}
		else
		{
			xmlChar    *s = xmlXPathCastToString(res);

			result = pstrdup((const char *) s);
			xmlFree(s);
		}
	}
	PG_CATCH();
	{
		if (res)
			xmlXPathFreeObject(res);
		if (comp)
			xmlXPathFreeCompExpr(comp);
		if (xpc)
			xmlXPathFreeContext(xpc);
		if (doc)
			xmlFreeDoc(doc);
		pg_xml_done(xcxt, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	xmlXPathFreeObject(res);
	xmlXPathFreeCompExpr(comp);
	xmlXPathFreeContext(xpc);
	xmlFreeDoc(doc);
	pg_xml_done(xcxt, false);
	return result;
}

#define NSMAP_ARG(n) (PG_NARGS() > (n) && !PG_ARGISNULL(n) ? PG_GETARG_ARRAYTYPE_P(n) : NULL)

PG_FUNCTION_INFO_V1(tv_meta_text);

/* trialvault.meta_text(doc xml, xpath text [, nsmap text[]]) RETURNS text */
Datum
tv_meta_text(PG_FUNCTION_ARGS)
{
	char	   *s = first_match(PG_GETARG_XML_P(0), PG_GETARG_TEXT_PP(1), NSMAP_ARG(2));

	if (s == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(s));
}

PG_FUNCTION_INFO_V1(tv_meta_int);

/* trialvault.meta_int(doc xml, xpath text [, nsmap text[]]) RETURNS bigint */
Datum
tv_meta_int(PG_FUNCTION_ARGS)
{
	char	   *s = first_match(PG_GETARG_XML_P(0), PG_GETARG_TEXT_PP(1), NSMAP_ARG(2));
	char	   *end;
	long long	v;

	if (s == NULL)
		PG_RETURN_NULL();
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	errno = 0;
	v = strtoll(s, &end, 10);
	while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')
		end++;
	if (end == s || *end != '\0' || errno == ERANGE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("metadata value selected by the XPath is not an integer"),
				 errhint("Use trialvault.meta_text() to read it as text.")));
	PG_RETURN_INT64((int64) v);
}

PG_FUNCTION_INFO_V1(tv_meta_date);

/*
 * trialvault.meta_date(doc xml, xpath text [, nsmap text[]]) RETURNS date
 * Accepts only xs:date's YYYY-MM-DD, so the result does not depend on
 * DateStyle and the function can be IMMUTABLE.
 */
Datum
tv_meta_date(PG_FUNCTION_ARGS)
{
	char	   *s = first_match(PG_GETARG_XML_P(0), PG_GETARG_TEXT_PP(1), NSMAP_ARG(2));
	int			y,
				m,
				d;
	char		extra;
	struct pg_tm tm;

	if (s == NULL)
		PG_RETURN_NULL();
	if (sscanf(s, " %4d-%2d-%2d %c", &y, &m, &d, &extra) != 3 ||
		strlen(s) < 10 || s[4] != '-' || s[7] != '-')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
				 errmsg("metadata value selected by the XPath is not a date in YYYY-MM-DD form")));
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y;
	tm.tm_mon = m;
	tm.tm_mday = d;
	if (y < 1 || m < 1 || m > 12 || d < 1 || d > day_tab[isleap(y)][m - 1])
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("metadata value selected by the XPath is not a date that exists"),
				 errdetail("It has the form YYYY-MM-DD but names no calendar day.")));
	PG_RETURN_DATEADT(date2j(y, m, d) - POSTGRES_EPOCH_JDATE);
}

