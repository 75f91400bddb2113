/*-------------------------------------------------------------------------
 *
 * xmlschema.c
 *		XSD schemas for metadata: compiling them (kept per backend, by the
 *		hash of their text) and validating documents against them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libxml/tree.h>
#include <libxml/xmlschemas.h>

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/xml.h"

#include "xmlmeta.h"

/*
 * Compile an XSD; on failure ereport with libxml2's first message.  The
 * caller frees the returned schema.
 */
static xmlSchemaPtr
compile_schema(PgXmlErrorContext *xcxt, xmltype *xsd, xmlDocPtr *xsddoc)
{
	xmlSchemaParserCtxtPtr pctxt;
	xmlSchemaPtr schema;
	XmlErrList	el;

	*xsddoc = tv_xml_parse(xcxt, xsd, "XSD");
	tv_xml_errlist_init(&el, 5);
	pctxt = xmlSchemaNewDocParserCtxt(*xsddoc);
	if (pctxt == NULL)
		xml_ereport(xcxt, ERROR, ERRCODE_OUT_OF_MEMORY, "could not create a schema parser");
	xmlSchemaSetParserStructuredErrors(pctxt, tv_xml_collect_error, &el);
	schema = xmlSchemaParse(pctxt);
	xmlSchemaFreeParserCtxt(pctxt);
	if (schema == NULL || el.nerrors > 0)
	{
		if (schema)
			xmlSchemaFree(schema);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_XML_DOCUMENT),
				 errmsg("invalid XSD: %s",
						el.nerrors > 0 ? el.messages[0] : "libxml2 could not compile it"),
				 el.nerrors > 0 ? errdetail("At line %d of the schema.", el.lines[0]) : 0));
	}
	return schema;
}

/*
 * Compiled schemas, kept per backend by the SHA-256 of the XSD text:
 * compiling took longer than validating a typical document.  A registered
 * XSD never changes (metadata_schemas is insert-only), and a different text
 * is a different key, so entries never go stale; the oldest is dropped when
 * the cache is full.
 */
#define SCHEMA_CACHE 8

typedef struct CachedSchema
{
	uint8		hash[TV_HASH_LEN];
	xmlSchemaPtr schema;
	xmlDocPtr	xsddoc;
} CachedSchema;

static CachedSchema schema_cache[SCHEMA_CACHE];
static int	schema_cache_next = 0;

xmlSchemaPtr
tv_xml_cached_schema(PgXmlErrorContext *xcxt, xmltype *xsd, const uint8 *known_hash)
{
	uint8		hash[TV_HASH_LEN];
	CachedSchema *slot;
	xmlDocPtr	xsddoc = NULL;
	xmlSchemaPtr schema;
	int			i;

	if (known_hash)
		memcpy(hash, known_hash, TV_HASH_LEN);
	else
	{
		EVP_MD_CTX *ctx = tv_sha_begin(TV_SHA_SMALL);

		tv_sha_update(ctx, VARDATA_ANY(xsd), VARSIZE_ANY_EXHDR(xsd));
		tv_sha_end(ctx, hash);
	}
	for (i = 0; i < SCHEMA_CACHE; i++)
		if (schema_cache[i].schema &&
			memcmp(schema_cache[i].hash, hash, TV_HASH_LEN) == 0)
			return schema_cache[i].schema;

	PG_TRY();
	{
		schema = compile_schema(xcxt, xsd, &xsddoc);
	}
	PG_CATCH();
	{
		if (xsddoc)
			xmlFreeDoc(xsddoc);
		PG_RE_THROW();
	}
	PG_END_TRY();

	slot = &schema_cache[schema_cache_next];
	schema_cache_next = (schema_cache_next + 1) % SCHEMA_CACHE;
	if (slot->schema)
	{
		xmlSchemaFree(slot->schema);
		xmlFreeDoc(slot->xsddoc);
	}
	memcpy(slot->hash, hash, TV_HASH_LEN);
	slot->schema = schema;
	slot->xsddoc = xsddoc;
	return schema;
}

PG_FUNCTION_INFO_V1(tv_check_xsd);

/* trialvault._check_xsd(xsd xml): compiles the schema or raises libxml2's error */
Datum
tv_check_xsd(PG_FUNCTION_ARGS)
{
	PgXmlErrorContext *xcxt = pg_xml_init(PG_XML_STRICTNESS_ALL);
	xmlDocPtr	xsddoc = NULL;
	xmlSchemaPtr volatile schema = NULL;

	PG_TRY();
	{
		schema = compile_schema(xcxt, PG_GETARG_XML_P(0), &xsddoc);
	}
	PG_CATCH();
	{
		if (xsddoc)
			xmlFreeDoc(xsddoc);
		pg_xml_done(xcxt, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	xmlSchemaFree(schema);
	xmlFreeDoc(xsddoc);
	pg_xml_done(xcxt, false);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(tv_validate_xml);

/*
 * trialvault._validate(xsd xml, doc xml, max_errors int)
 *	 RETURNS TABLE (line int, col int, message text)
 * One row per validation error, at most max_errors; none when valid.
 */
Datum
tv_validate_xml(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PgXmlErrorContext *xcxt;
	xmlDocPtr volatile doc = NULL;
	xmlSchemaPtr schema;
	xmlSchemaValidCtxtPtr volatile vctxt = NULL;
	XmlErrList	el;
	int			maxerr = PG_GETARG_INT32(2);
	int			i;

	if (maxerr < 1 || maxerr > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_errors must be between 1 and 1000")));
	InitMaterializedSRF(fcinfo, 0);
	tv_xml_errlist_init(&el, maxerr);

	xcxt = pg_xml_init(PG_XML_STRICTNESS_ALL);
	PG_TRY();
	{
		int			rc;

		schema = tv_xml_cached_schema(xcxt, PG_GETARG_XML_P(0), NULL);
		doc = tv_xml_parse(xcxt, PG_GETARG_XML_P(1), "metadata");
		vctxt = xmlSchemaNewValidCtxt(schema);
		if (vctxt == NULL)
			xml_ereport(xcxt, ERROR, ERRCODE_OUT_OF_MEMORY, "could not create a schema validator");
		xmlSchemaSetValidStructuredErrors(vctxt, tv_xml_collect_error, &el);
		rc = xmlSchemaValidateDoc(vctxt, doc);
		if (rc != 0 && el.nerrors == 0)
		{
			xmlError	generic;

			memset(&generic, 0, sizeof(generic));
			generic.message = "document does not conform to the schema";
			tv_xml_collect_error(&el, &generic);
		}
	}
	PG_CATCH();
	{
		if (vctxt)
			xmlSchemaFreeValidCtxt(vctxt);
		if (doc)
			xmlFreeDoc(doc);
		pg_xml_done(xcxt, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	xmlSchemaFreeValidCtxt(vctxt);
	xmlFreeDoc(doc);
	pg_xml_done(xcxt, false);

	for (i = 0; i < el.nerrors; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = Int32GetDatum(el.lines[i]);
		values[1] = Int32GetDatum(el.cols[i]);
		values[2] = CStringGetTextDatum(el.messages[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

