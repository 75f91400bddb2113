/*-------------------------------------------------------------------------
 *
 * xmlmeta.c
 *		Document metadata in XML: XSD validation, the node list PHI
 *		screening runs over, canonical form and its SHA-256, and typed
 *		extraction by XPath, with libxml2.
 *
 * PostgreSQL's xml type parses and runs XPath but cannot validate against a
 * schema or canonicalize.  Everything here parses the metadata again with
 * libxml2 under PostgreSQL's own error context (pg_xml_init), so libxml2's
 * messages become ereport()s and never reach stderr, and its external
 * entity loader refuses every external entity.  On top of that a document
 * or schema with a DOCTYPE is refused outright (metadata needs no DTD, and
 * it is where entity bombs and external entities live), nothing is loaded
 * from the network, and documents larger than trialvault.max_metadata_size
 * are refused before parsing.
 *
 * Canonical form: standard Exclusive XML Canonicalization 1.0 without
 * comments, unmodified, so that any other implementation (an inspector's
 * xmlsec, a signature verifier) computes the same bytes.  Attribute order,
 * quote style, whitespace inside tags, redundant or unused namespace
 * declarations, the XML declaration and comments do not change them; text
 * (including whitespace between elements), names, prefixes and namespace
 * URIs do.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libxml/c14n.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/xml.h"

#include "trialvault.h"

int			tv_max_metadata_size = 1024 * 1024;

/* Errors collected from libxml2 while validating or compiling a schema. */
typedef struct XmlErrList
{
	int			nerrors;
	int			maxerrors;
	int		   *lines;
	int		   *cols;
	char	  **messages;
} XmlErrList;

static void
collect_error(void *arg, xmlErrorPtr err)
{
	XmlErrList *el = (XmlErrList *) arg;
	char	   *msg;
	int			len;

	if (el->nerrors >= el->maxerrors)
		return;
	msg = pstrdup(err->message ? err->message : "unknown error");
	len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		msg[--len] = '\0';
	el->lines[el->nerrors] = err->line;
	el->cols[el->nerrors] = err->int2;
	el->messages[el->nerrors] = msg;
	el->nerrors++;
}

static void
init_errlist(XmlErrList *el, int max)
{
	el->nerrors = 0;
	el->maxerrors = max;
	el->lines = palloc(sizeof(int) * max);
	el->cols = palloc(sizeof(int) * max);
	el->messages = palloc(sizeof(char *) * max);
}

static void
check_size(const char *what, int len)
{
	if (len > tv_max_metadata_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too large: %d bytes", what, len),
				 errdetail("trialvault.max_metadata_size is %d bytes.", tv_max_metadata_size),
				 errhint("Keep large content in the document itself; metadata describes it.")));
}

/*
 * Parse an xml datum into a libxml2 document.  Must be called inside
 * pg_xml_init()/pg_xml_done(); the caller frees the document.
 */
static xmlDocPtr
parse_doc(PgXmlErrorContext *xcxt, xmltype *x, const char *what)
{
	int			len = VARSIZE_ANY_EXHDR(x);
	xmlDocPtr	doc;

	check_size(what, len);
	doc = xmlReadMemory(VARDATA_ANY(x), len, NULL, "UTF-8",
						XML_PARSE_NONET | XML_PARSE_NOWARNING);
	if (doc == NULL || pg_xml_error_occurred(xcxt))
	{
		if (doc)
			xmlFreeDoc(doc);
		xml_ereport(xcxt, ERROR, ERRCODE_INVALID_XML_DOCUMENT,
					psprintf("%s is not a well-formed XML document", what));
	}
	if (doc->intSubset != NULL || doc->extSubset != NULL)
	{
		xmlFreeDoc(doc);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_XML_DOCUMENT),
				 errmsg("%s must not contain a DOCTYPE declaration", what),
				 errdetail("trialvault refuses DTDs in metadata: they can define entities that expand without bound or read files."),
				 errhint("Remove the <!DOCTYPE ...> declaration; validate against a registered XSD instead.")));
	}
	if (xmlDocGetRootElement(doc) == NULL)
	{
		xmlFreeDoc(doc);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_XML_DOCUMENT),
				 errmsg("%s has no root element", what)));
	}
	return doc;
}

static bool
is_blank(const xmlChar *s)
{
	if (s == NULL)
		return true;
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			return false;
	return true;
}

/*
 * The canonical bytes of a metadata document (see the file header), as a
 * palloc'd bytea.
 */
static bytea *
canonical_bytes(xmltype *x)
{
	PgXmlErrorContext *xcxt = pg_xml_init(PG_XML_STRICTNESS_ALL);

	/*
	 * Everything assigned inside PG_TRY and freed in PG_CATCH is volatile:
	 * without it the catch block can see the value from before the assignment
	 * and leak the libxml2 object.
	 */
	xmlDocPtr volatile doc = NULL;
	xmlChar    *volatile out = NULL;
	bytea	   *volatile result = NULL;

	PG_TRY();
	{
		int			len;

		doc = parse_doc(xcxt, x, "metadata");
		len = xmlC14NDocDumpMemory(doc, NULL, XML_C14N_EXCLUSIVE_1_0, NULL, 0,
								   (xmlChar **) &out);
		if (len < 0 || out == NULL)
			xml_ereport(xcxt, ERROR, ERRCODE_INVALID_XML_DOCUMENT,
						"could not canonicalize metadata");
		result = palloc(VARHDRSZ + len);
		SET_VARSIZE(result, VARHDRSZ + len);
		memcpy(VARDATA(result), out, len);
	}
	PG_CATCH();
	{
		if (out)
			xmlFree(out);
		if (doc)
			xmlFreeDoc(doc);
		pg_xml_done(xcxt, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	xmlFree(out);
	xmlFreeDoc(doc);
	pg_xml_done(xcxt, false);
	return result;
}

PG_FUNCTION_INFO_V1(tv_metadata_c14n);

/* trialvault.metadata_c14n(doc xml) RETURNS bytea */
Datum
tv_metadata_c14n(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(canonical_bytes(PG_GETARG_XML_P(0)));
}

PG_FUNCTION_INFO_V1(tv_metadata_sha256);

/* trialvault.metadata_sha256(doc xml) RETURNS bytea: SHA-256 of metadata_c14n */
Datum
tv_metadata_sha256(PG_FUNCTION_ARGS)
{
	bytea	   *c = canonical_bytes(PG_GETARG_XML_P(0));
	bytea	   *result = palloc(VARHDRSZ + TV_HASH_LEN);
	EVP_MD_CTX *md = tv_sha_begin(TV_SHA_SMALL);

	tv_sha_update(md, VARDATA(c), VARSIZE(c) - VARHDRSZ);
	SET_VARSIZE(result, VARHDRSZ + TV_HASH_LEN);
	tv_sha_end(md, (uint8 *) VARDATA(result));
	PG_RETURN_BYTEA_P(result);
}

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

	*xsddoc = parse_doc(xcxt, xsd, "XSD");
	init_errlist(&el, 5);
	pctxt = xmlSchemaNewDocParserCtxt(*xsddoc);
	if (pctxt == NULL)
		xml_ereport(xcxt, ERROR, ERRCODE_OUT_OF_MEMORY, "could not create a schema parser");
	xmlSchemaSetParserStructuredErrors(pctxt, collect_error, &el);
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

static xmlSchemaPtr
cached_schema(PgXmlErrorContext *xcxt, xmltype *xsd)
{
	uint8		hash[TV_HASH_LEN];
	EVP_MD_CTX *ctx = tv_sha_begin(TV_SHA_SMALL);
	CachedSchema *slot;
	xmlDocPtr	xsddoc = NULL;
	xmlSchemaPtr schema;
	int			i;

	tv_sha_update(ctx, VARDATA_ANY(xsd), VARSIZE_ANY_EXHDR(xsd));
	tv_sha_end(ctx, hash);
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
	init_errlist(&el, maxerr);

	xcxt = pg_xml_init(PG_XML_STRICTNESS_ALL);
	PG_TRY();
	{
		int			rc;

		schema = cached_schema(xcxt, PG_GETARG_XML_P(0));
		doc = parse_doc(xcxt, PG_GETARG_XML_P(1), "metadata");
		vctxt = xmlSchemaNewValidCtxt(schema);
		if (vctxt == NULL)
			xml_ereport(xcxt, ERROR, ERRCODE_OUT_OF_MEMORY, "could not create a schema validator");
		xmlSchemaSetValidStructuredErrors(vctxt, collect_error, &el);
		rc = xmlSchemaValidateDoc(vctxt, doc);
		if (rc != 0 && el.nerrors == 0)
		{
			xmlError	generic;

			memset(&generic, 0, sizeof(generic));
			generic.message = "document does not conform to the schema";
			collect_error(&el, &generic);
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

/* What walk_nodes() calls for every element, attribute and text node. */
typedef void (*NodeVisitor) (void *arg, const char *kind, const xmlChar *name,
							 const char *path, const xmlChar *value);

static void
put_node(void *arg, const char *kind, const xmlChar *name,
		 const char *path, const xmlChar *value)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) arg;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	values[0] = CStringGetTextDatum(kind);
	if (name)
		values[1] = CStringGetTextDatum((const char *) name);
	else
		nulls[1] = true;
	values[2] = CStringGetTextDatum(path);
	if (value)
		values[3] = CStringGetTextDatum((const char *) value);
	else
		nulls[3] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * Position counters of element names among one list of siblings.  libxml2
 * interns names in the document's dictionary, so equal names are equal
 * pointers.  A short list is scanned; past SMALL_NAMES distinct names a hash
 * table takes over, so a document with many siblings stays linear.
 */
#define SMALL_NAMES 16

typedef struct NameCount
{
	const xmlChar *name;		/* hash key */
	int			count;
} NameCount;

typedef struct SiblingCounts
{
	NameCount	small[SMALL_NAMES];
	int			nsmall;
	HTAB	   *hash;
} SiblingCounts;

static int
next_position(SiblingCounts *sc, const xmlChar *name)
{
	int			i;
	NameCount  *nc;
	bool		found;

	if (sc->hash == NULL)
	{
		for (i = 0; i < sc->nsmall; i++)
			if (sc->small[i].name == name)
				return ++sc->small[i].count;
		if (sc->nsmall < SMALL_NAMES)
		{
			sc->small[sc->nsmall].name = name;
			sc->small[sc->nsmall].count = 1;
			sc->nsmall++;
			return 1;
		}
		else
		{
			HASHCTL		ctl;

			ctl.keysize = sizeof(const xmlChar *);
			ctl.entrysize = sizeof(NameCount);
			ctl.hcxt = CurrentMemoryContext;
			sc->hash = hash_create("trialvault sibling names", 256, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
			for (i = 0; i < sc->nsmall; i++)
			{
				nc = hash_search(sc->hash, &sc->small[i].name, HASH_ENTER, NULL);
				nc->count = sc->small[i].count;
			}
		}
	}
	nc = hash_search(sc->hash, &name, HASH_ENTER, &found);
	if (!found)
		nc->count = 0;
	return ++nc->count;
}

/*
 * Emit every element, attribute and non-blank text node below a list of
 * siblings.  path holds the parent's path (/meta[1]/subject[1]) on entry
 * and again on return; each node's path is built once, so the walk is
 * linear in the size of the document.
 */
static void
walk_nodes(NodeVisitor visit, void *arg, xmlNodePtr node, StringInfo path)
{
	int			parentlen = path->len;
	SiblingCounts sc;

	check_stack_depth();
	sc.nsmall = 0;
	sc.hash = NULL;
	for (; node; node = node->next)
	{
		CHECK_FOR_INTERRUPTS();
		if (node->type == XML_ELEMENT_NODE)
		{
			xmlAttrPtr	attr;

			appendStringInfo(path, "/%s[%d]", (const char *) node->name,
							 next_position(&sc, node->name));
			visit(arg, "element", node->name, path->data, NULL);
			for (attr = node->properties; attr; attr = attr->next)
			{
				int			elemlen = path->len;
				xmlChar    *v = xmlNodeGetContent((xmlNodePtr) attr);

				appendStringInfo(path, "/@%s", (const char *) attr->name);
				visit(arg, "attribute", attr->name, path->data, v);
				xmlFree(v);
				path->len = elemlen;
				path->data[elemlen] = '\0';
			}
			walk_nodes(visit, arg, node->children, path);
			path->len = parentlen;
			path->data[parentlen] = '\0';
		}
		else if ((node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE) &&
				 !is_blank(node->content))
			visit(arg, "text", NULL, path->data, node->content);
	}
	if (sc.hash)
		hash_destroy(sc.hash);
}

/* Parse metadata and walk it, freeing libxml2's objects on every path. */
static void
walk_document(xmltype *x, NodeVisitor visit, void *arg)
{
	PgXmlErrorContext *xcxt = pg_xml_init(PG_XML_STRICTNESS_ALL);
	xmlDocPtr volatile doc = NULL;

	PG_TRY();
	{
		StringInfoData path;

		doc = parse_doc(xcxt, x, "metadata");
		initStringInfo(&path);
		walk_nodes(visit, arg, xmlDocGetRootElement(doc), &path);
	}
	PG_CATCH();
	{
		if (doc)
			xmlFreeDoc(doc);
		pg_xml_done(xcxt, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	xmlFreeDoc(doc);
	pg_xml_done(xcxt, false);
}

PG_FUNCTION_INFO_V1(tv_xml_nodes);

/*
 * trialvault._xml_nodes(doc xml)
 *	 RETURNS TABLE (kind text, name text, path text, value text)
 * Every element, attribute and non-blank text node, for PHI screening.
 */
Datum
tv_xml_nodes(PG_FUNCTION_ARGS)
{
	InitMaterializedSRF(fcinfo, 0);
	walk_document(PG_GETARG_XML_P(0), put_node, fcinfo->resultinfo);
	return (Datum) 0;
}

/*
 * PHI screening in one pass over the document, for screen_metadata():
 * element, attribute and name rules compare names case-insensitively (as
 * lower() does), pattern rules run the regex on attribute values and text.
 * XPath rules stay in SQL (xpath_exists), where their semantics live.
 */
typedef struct ScreenRule
{
	text	   *rule_name;
	char		kind;			/* 'e'lement, 'a'ttribute, 'n'ame, 'p'attern */
	char	   *lowered;		/* name rules: the name, lowercased */
	text	   *pattern;		/* pattern rules */
} ScreenRule;

typedef struct ScreenState
{
	ReturnSetInfo *rsinfo;
	int			nrules;
	ScreenRule *rules;
	bool		any_names;
} ScreenState;

static void
screen_emit(ScreenState *st, ScreenRule *r, const char *path)
{
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	const char *kind = r->kind == 'e' ? "element" : r->kind == 'a' ? "attribute" :
	r->kind == 'n' ? "name" : "pattern";

	values[0] = PointerGetDatum(r->rule_name);
	values[1] = CStringGetTextDatum(kind);
	values[2] = CStringGetTextDatum(path);
	tuplestore_putvalues(st->rsinfo->setResult, st->rsinfo->setDesc, values, nulls);
}

static void
screen_node(void *arg, const char *kind, const xmlChar *name,
			const char *path, const xmlChar *value)
{
	ScreenState *st = (ScreenState *) arg;
	char	   *lname = NULL;
	text	   *tvalue = NULL;
	int			i;

	if (name && st->any_names)
		lname = str_tolower((const char *) name, strlen((const char *) name),
							DEFAULT_COLLATION_OID);
	for (i = 0; i < st->nrules; i++)
	{
		ScreenRule *r = &st->rules[i];

		if (r->kind == 'p')
		{
			if (value == NULL || kind[0] == 'e')
				continue;
			if (tvalue == NULL)
				tvalue = cstring_to_text((const char *) value);
			if (DatumGetBool(DirectFunctionCall2Coll(textregexeq, DEFAULT_COLLATION_OID,
													 PointerGetDatum(tvalue),
													 PointerGetDatum(r->pattern))))
				screen_emit(st, r, path);
		}
		else if (lname &&
				 (r->kind == 'n' || r->kind == kind[0]) &&
				 strcmp(lname, r->lowered) == 0)
			screen_emit(st, r, path);
	}
	if (lname)
		pfree(lname);
	if (tvalue)
		pfree(tvalue);
}

PG_FUNCTION_INFO_V1(tv_screen_nodes);

/*
 * trialvault._screen_nodes(doc xml, rule_names text[], kinds text[],
 *							exprs text[])
 *	 RETURNS TABLE (rule_name text, kind text, path text)
 */
Datum
tv_screen_nodes(PG_FUNCTION_ARGS)
{
	ScreenState st;
	Datum	   *names;
	Datum	   *kinds;
	Datum	   *exprs;
	bool	   *nnull;
	bool	   *knull;
	bool	   *enull;
	int			nn;
	int			nk;
	int			ne;
	int			i;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("trialvault._screen_nodes: arguments must not be NULL")));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT, &names, &nnull, &nn);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), TEXTOID, -1, false, TYPALIGN_INT, &kinds, &knull, &nk);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TEXTOID, -1, false, TYPALIGN_INT, &exprs, &enull, &ne);
	if (nn != nk || nn != ne)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("trialvault._screen_nodes: rule arrays differ in length")));

	st.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	st.nrules = 0;
	st.any_names = false;
	st.rules = palloc0(sizeof(ScreenRule) * Max(nn, 1));
	for (i = 0; i < nn; i++)
	{
		ScreenRule *r = &st.rules[st.nrules];
		char	   *k;
		char	   *e;

		if (nnull[i] || knull[i] || enull[i])
			continue;
		k = TextDatumGetCString(kinds[i]);
		e = TextDatumGetCString(exprs[i]);
		r->rule_name = DatumGetTextPP(names[i]);
		if (strcmp(k, "element") == 0 || strcmp(k, "attribute") == 0 || strcmp(k, "name") == 0)
		{
			r->kind = k[0];
			r->lowered = str_tolower(e, strlen(e), DEFAULT_COLLATION_OID);
			st.any_names = true;
		}
		else if (strcmp(k, "pattern") == 0)
		{
			r->kind = 'p';
			r->pattern = cstring_to_text(e);
		}
		else
			continue;			/* xpath and unknown kinds: not here */
		st.nrules++;
	}

	InitMaterializedSRF(fcinfo, 0);
	walk_document(PG_GETARG_XML_P(0), screen_node, &st);
	return (Datum) 0;
}

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
		doc = parse_doc(xcxt, x, "metadata");
		xpc = xmlXPathNewContext(doc);
		if (xpc == NULL)
			xml_ereport(xcxt, ERROR, ERRCODE_OUT_OF_MEMORY, "could not create an XPath context");
		register_namespaces(xpc, nsmap);
		comp = xmlXPathCtxtCompile(xpc, (xmlChar *) expr);
		if (comp == NULL || pg_xml_error_occurred(xcxt))
			xml_ereport(xcxt, ERROR, ERRCODE_INVALID_PARAMETER_VALUE,
						psprintf("invalid XPath expression \"%s\"", expr));
		res = xmlXPathCompiledEval(comp, xpc);
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

void
tv_xmlmeta_init(void)
{
	DefineCustomIntVariable("trialvault.max_metadata_size",
							"Largest XML metadata document, in bytes, that trialvault parses.",
							"Larger documents are refused before parsing.",
							&tv_max_metadata_size,
							1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);
}
