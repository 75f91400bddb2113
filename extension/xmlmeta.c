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
 * inspect_metadata(), what document loading runs, does screening,
 * validation and the canonical hash from one SAX parse with the study's
 * rules and schema cached per backend; see the comment above it.
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
#include <libxml/parserInternals.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/uri.h>
#include <libxml/xmlschemas.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/xml.h"

#include "trialvault.h"

int			tv_max_metadata_size = 1024 * 1024;
int			tv_xpath_max_steps = 20000000;

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

/* For validation whose verdict is all that counts. */
static void
ignore_error(void *arg, xmlErrorPtr err)
{
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

/*
 * Appending to a StringInfo, inlined: the streaming path appends a few bytes
 * at a time, and a call into the server for each cost more than the bytes.
 */
static inline void
put_bytes(StringInfo out, const char *s, int n)
{
	if (out->len + n >= out->maxlen)
		enlargeStringInfo(out, n);
	memcpy(out->data + out->len, s, n);
	out->len += n;
	out->data[out->len] = '\0';
}

static inline void
put_char(StringInfo out, char c)
{
	if (out->len + 1 >= out->maxlen)
		enlargeStringInfo(out, 1);
	out->data[out->len++] = c;
	out->data[out->len] = '\0';
}

#define PUT_LITERAL(out, s) put_bytes((out), (s), sizeof(s) - 1)

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

/* Metadata and schemas never have a DTD: where entity bombs and file reads live. */
static void
refuse_doctype(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_XML_DOCUMENT),
			 errmsg("%s must not contain a DOCTYPE declaration", what),
			 errdetail("trialvault refuses DTDs in metadata: they can define entities that expand without bound or read files."),
			 errhint("Remove the <!DOCTYPE ...> declaration; validate against a registered XSD instead.")));
}

/*
 * XPath evaluation cannot be interrupted: libxml2 calls nothing of ours
 * while it runs, so statement_timeout and pg_cancel_backend() wait for it.
 * Every evaluation therefore gets a budget of steps (libxml2 counts the
 * operations it performs and the nodes it handles), which bounds how long
 * it can run; a cancel that arrived meanwhile is honoured as soon as it
 * returns.  On this project's machines 20 million steps take about 0.15 s.
 */
static void
xpath_budget(xmlXPathContextPtr xpc)
{
	xpc->opLimit = (unsigned long) tv_xpath_max_steps;
	xpc->opCount = 0;
}

/* After an evaluation: a pending cancel first, then the budget. */
static void
xpath_check_budget(xmlXPathContextPtr xpc)
{
	CHECK_FOR_INTERRUPTS();
	if (xpc->opLimit != 0 && xpc->opCount >= xpc->opLimit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("XPath expression needs more than %d steps", tv_xpath_max_steps),
				 errdetail("trialvault.xpath_max_steps bounds the work of one XPath evaluation, which cannot be interrupted while it runs."),
				 errhint("Simplify the expression (avoid nested \"//\" in predicates), or have a superuser raise trialvault.xpath_max_steps.")));
}

/*
 * Exclusive C14N refuses a namespace URI without a scheme (libxml2's
 * xmlC14NCheckForRelativeNamespaces): such metadata could be loaded but its
 * canonical form, which is hashed and signed, never computed.  This is the
 * same test, with an error that says what is wrong.
 */
static bool
namespace_uri_absolute(const xmlChar *href)
{
	xmlURIPtr	uri;
	bool		ok;

	if (href == NULL || href[0] == '\0')
		return true;
	uri = xmlParseURI((const char *) href);
	ok = uri != NULL && uri->scheme != NULL && uri->scheme[0] != '\0';
	if (uri)
		xmlFreeURI(uri);
	return ok;
}

static void
refuse_relative_namespaces(xmlNodePtr node)
{
	for (; node != NULL; node = node->next)
	{
		xmlNsPtr	ns;

		if (node->type != XML_ELEMENT_NODE)
			continue;
		for (ns = node->nsDef; ns != NULL; ns = ns->next)
		{
			if (!namespace_uri_absolute(ns->href))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_XML_DOCUMENT),
						 errmsg("metadata declares a relative namespace URI on element <%s>",
								(const char *) node->name),
						 errdetail("The canonical form of metadata (Exclusive XML Canonicalization), which is hashed and signed, is defined only for absolute namespace URIs."),
						 errhint("Use an absolute URI, with a scheme, such as urn:example:visit or https://example.org/visit.")));
		}
		refuse_relative_namespaces(node->children);
	}
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
		refuse_doctype(what);
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
		refuse_relative_namespaces(xmlDocGetRootElement(doc));
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

/* The SHA-256 of a metadata document's canonical bytes, into hash. */
static void
canonical_sha256(xmltype *x, uint8 *hash)
{
	bytea	   *c = canonical_bytes(x);
	EVP_MD_CTX *md = tv_sha_begin(TV_SHA_SMALL);

	tv_sha_update(md, VARDATA(c), VARSIZE(c) - VARHDRSZ);
	tv_sha_end(md, hash);
	pfree(c);
}

PG_FUNCTION_INFO_V1(tv_metadata_sha256);

/* trialvault.metadata_sha256(doc xml) RETURNS bytea: SHA-256 of metadata_c14n */
Datum
tv_metadata_sha256(PG_FUNCTION_ARGS)
{
	uint8		hash[TV_HASH_LEN];

	canonical_sha256(PG_GETARG_XML_P(0), hash);
	PG_RETURN_BYTEA_P(tv_hash_bytea(hash));
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
cached_schema(PgXmlErrorContext *xcxt, xmltype *xsd, const uint8 *known_hash)
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
	init_errlist(&el, maxerr);

	xcxt = pg_xml_init(PG_XML_STRICTNESS_ALL);
	PG_TRY();
	{
		int			rc;

		schema = cached_schema(xcxt, PG_GETARG_XML_P(0), NULL);
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
 * trialvault._xml_nodes(), which only tests called, is gone since 0.6; the
 * frozen scripts of 0.2 to 0.5 still create it, so the symbol stays.
 */
Datum
tv_xml_nodes(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("trialvault._xml_nodes() was removed in trialvault 0.6"),
			 errhint("Run ALTER EXTENSION trialvault UPDATE.")));
	PG_RETURN_NULL();
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
	char	   *ascii;			/* the same by ASCII folding, if it is ASCII */
	uint32		ascii_hash;		/* ascii_lower_hash() of it */
	text	   *pattern;		/* pattern rules */
	bool		joinable;		/* may run once over all values (joined_ok) */
	bool		in_combined;	/* part of StudyConfig.combined */
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
		xpath_budget(xpc);
		res = xmlXPathCompiledEval(comp, xpc);
		xpath_check_budget(xpc);
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

/*
 * inspect_metadata(): everything document loading needs of the metadata,
 * from one parse.
 *
 * check_metadata() used to screen, validate and hash through three
 * functions that each parsed the document again, with the study's rules
 * and schema looked up in SQL on every call.  Here the document is parsed
 * once, the study's rules and schema come from a per-backend cache, and
 * screening, validation and C14N run on that one parse: as SAX events (the
 * streaming path below), or on a tree when an XPath rule needs one or the
 * stream cannot canonicalize the document itself.
 *
 * The cache is kept right by the chain's generation numbers
 * (tv_chain_generation): an entry remembers those of phi_rules,
 * metadata_schemas and metadata_defaults and is reloaded when any moved.
 * It is bypassed when tv_chain_generation says a cache cannot be trusted
 * (this transaction inserted into one of them, a transaction snapshot, a
 * standby).
 *
 * The fast path only decides that the metadata is clean and valid.  When
 * it finds anything (a rule that may match, a validation error), the
 * plpgsql _check_metadata_report() runs the check again and raises the
 * error users see, with the rule, the path and the masked messages; the
 * fast name comparison may match more than lower() does in some locales,
 * so a finding the report does not confirm is not one.
 */
typedef struct MetaSchema
{
	char	   *name;
	int32		version;
	uint8		hash[TV_HASH_LEN];	/* of the XSD text: the schema_cache key */
	xmltype    *xsd;
} MetaSchema;

/* An ASCII name rule in the open-addressing table of a StudyConfig. */
#define NAME_ELEMENT	1
#define NAME_ATTRIBUTE	2

typedef struct NameSlot
{
	const char *name;			/* ASCII-lowered; NULL: empty slot */
	uint32		hash;
	int			kinds;			/* NAME_ELEMENT | NAME_ATTRIBUTE */
} NameSlot;

typedef struct StudyConfig
{
	char	   *study;
	MemoryContext cxt;
	uint64		gens[3];		/* phi_rules, metadata_schemas, metadata_defaults */
	int			nrules;
	ScreenRule *rules;			/* name and pattern rules */
	NameSlot   *names;			/* ASCII name rules; nameslots a power of 2 */
	int			nameslots;
	bool		nonascii_names; /* some name rule is not plain ASCII */
	text	   *combined;		/* joinable patterns as one alternation */
	ScreenRule **patterns;		/* the pattern rules */
	int			npatterns;
	bool		any_joinable;
	bool		all_joinable;
	int			nxpaths;
	char	  **xpaths;
	char	   *default_schema; /* NULL: none */
	List	   *schemas;		/* MetaSchema *, resolved so far */
} StudyConfig;

#define CONFIG_CACHE 16
#define CONFIG_TABLES 3

static const char *const config_tables[CONFIG_TABLES] = {
	"phi_rules", "metadata_schemas", "metadata_defaults"
};
static StudyConfig *config_cache[CONFIG_CACHE];
static bool joined_ok(const char *pattern);
static int	config_cache_next = 0;
static SPIPlanPtr rules_plan = NULL;
static SPIPlanPtr default_plan = NULL;
static SPIPlanPtr schema_plan = NULL;
static SPIPlanPtr report_plan = NULL;

static void
free_config(StudyConfig *c)
{
	MemoryContextDelete(c->cxt);
}

/*
 * A name folded to lower case ASCII into out, and its hash (FNV-1a) for the
 * table of ASCII name rules; false when the name is not plain ASCII (or too
 * long for out).
 */
static bool
ascii_lower_hash(const char *s, char *out, int outlen, uint32 *hash)
{
	uint32		h = 2166136261u;
	int			i;

	for (i = 0; s[i]; i++)
	{
		char		ch;

		if (IS_HIGHBIT_SET(s[i]) || i >= outlen - 1)
			return false;
		ch = pg_ascii_tolower((unsigned char) s[i]);
		out[i] = ch;
		h = (h ^ (unsigned char) ch) * 16777619u;
	}
	out[i] = '\0';
	*hash = h;
	return true;
}

/* Rows of the cache's tables committed since gens were read? */
static bool
config_current(StudyConfig *c, const uint64 *gens)
{
	return memcmp(c->gens, gens, sizeof(c->gens)) == 0;
}

/* The table fast_screen_name() probes, in the config's memory context. */
static void
build_name_table(StudyConfig *c)
{
	int			n = 0;
	int			i;

	for (i = 0; i < c->nrules; i++)
		if (c->rules[i].kind != 'p' && c->rules[i].ascii)
			n++;
	if (n == 0)
		return;
	c->nameslots = 8;
	while (c->nameslots < 2 * n)
		c->nameslots *= 2;
	c->names = palloc0(sizeof(NameSlot) * c->nameslots);
	for (i = 0; i < c->nrules; i++)
	{
		ScreenRule *r = &c->rules[i];
		uint32		h = r->ascii_hash;
		int			kinds;
		int			j;

		if (r->kind == 'p' || r->ascii == NULL)
			continue;
		kinds = r->kind == 'e' ? NAME_ELEMENT : r->kind == 'a' ? NAME_ATTRIBUTE :
			NAME_ELEMENT | NAME_ATTRIBUTE;
		for (j = h & (c->nameslots - 1); c->names[j].name != NULL &&
			 !(c->names[j].hash == h && strcmp(c->names[j].name, r->ascii) == 0);
			 j = (j + 1) & (c->nameslots - 1))
			;
		c->names[j].name = r->ascii;
		c->names[j].hash = h;
		c->names[j].kinds |= kinds;
	}
}

/*
 * The joinable patterns as one regex, (?:p1)|(?:p2)|..., so that the joined
 * values are searched once: one match of the alternation is a match of one
 * of them.  A pattern with a back reference (\\1) stays out, since the
 * groups of the patterns before it would renumber its own.
 */
static void
combine_patterns(StudyConfig *c)
{
	StringInfoData buf;
	int			n = 0;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < c->nrules; i++)
	{
		ScreenRule *r = &c->rules[i];
		char	   *p;
		const char *s;
		bool		backref = false;

		if (r->kind != 'p' || !r->joinable)
			continue;
		p = text_to_cstring(r->pattern);
		for (s = p; *s; s++)
		{
			if (*s == '\\' && s[1] != '\0')
			{
				if (isdigit((unsigned char) s[1]))
					backref = true;
				s++;
			}
		}
		if (backref)
			continue;
		appendStringInfo(&buf, "%s(?:%s)", n > 0 ? "|" : "", p);
		r->in_combined = true;
		n++;
	}
	if (n > 1)
		c->combined = cstring_to_text_with_len(buf.data, buf.len);
}

/* The pattern rules, for the per-value loop. */
static void
list_patterns(StudyConfig *c)
{
	int			i;

	c->patterns = palloc(sizeof(ScreenRule *) * Max(c->nrules, 1));
	c->all_joinable = true;
	for (i = 0; i < c->nrules; i++)
	{
		if (c->rules[i].kind != 'p')
			continue;
		c->patterns[c->npatterns++] = &c->rules[i];
		if (c->rules[i].joinable)
			c->any_joinable = true;
		else
			c->all_joinable = false;
	}
}

/* Load a study's rules and default schema name, as the extension owner. */
static pg_noinline StudyConfig *
load_config(const char *study, const uint64 *gens, bool keep)
{
	StudyConfig *c;
	MemoryContext cxt;
	MemoryContext old;
	Datum		arg = CStringGetTextDatum(study);
	Oid			argtype = TEXTOID;
	TvAsOwner	as;
	uint64		i;

	/* Under the caller's context until loaded, so an error frees it. */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "trialvault metadata config",
								ALLOCSET_SMALL_SIZES);
	c = MemoryContextAllocZero(cxt, sizeof(StudyConfig));
	c->cxt = cxt;
	c->study = MemoryContextStrdup(cxt, study);
	memcpy(c->gens, gens, sizeof(c->gens));

	tv_owner_spi_begin(&as);
	if (SPI_execute_plan(tv_kept_plan(&rules_plan,
									  "SELECT rule_name, kind, expr FROM trialvault.phi_rules_for($1)",
									  1, &argtype),
						 &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the PHI rules");
	old = MemoryContextSwitchTo(cxt);
	c->rules = palloc0(sizeof(ScreenRule) * Max(SPI_processed, 1));
	c->xpaths = palloc0(sizeof(char *) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(tup, td, 1);
		char	   *kind = SPI_getvalue(tup, td, 2);
		char	   *expr = SPI_getvalue(tup, td, 3);
		ScreenRule *r = &c->rules[c->nrules];

		if (name == NULL || kind == NULL || expr == NULL)
			continue;
		if (strcmp(kind, "xpath") == 0)
		{
			c->xpaths[c->nxpaths++] = expr;
			continue;
		}
		r->rule_name = cstring_to_text(name);
		if (strcmp(kind, "pattern") == 0)
		{
			r->kind = 'p';
			r->pattern = cstring_to_text(expr);
			r->joinable = joined_ok(expr);
		}
		else if (strcmp(kind, "element") == 0 || strcmp(kind, "attribute") == 0 ||
				 strcmp(kind, "name") == 0)
		{
			char		buf[256];
			uint32		h;

			r->kind = kind[0];
			r->lowered = str_tolower(expr, strlen(expr), DEFAULT_COLLATION_OID);
			if (ascii_lower_hash(expr, buf, sizeof(buf), &h))
			{
				r->ascii = pstrdup(buf);
				r->ascii_hash = h;
			}
			else
				c->nonascii_names = true;
		}
		else
			continue;
		c->nrules++;
	}
	build_name_table(c);
	list_patterns(c);
	combine_patterns(c);
	MemoryContextSwitchTo(old);

	if (SPI_execute_plan(tv_kept_plan(&default_plan,
									  "SELECT d.name FROM trialvault.metadata_defaults d"
									  " WHERE d.study = $1 ORDER BY d.tv_seq DESC LIMIT 1",
									  1, &argtype),
						 &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the default metadata schema");
	if (SPI_processed == 1)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (name)
			c->default_schema = MemoryContextStrdup(cxt, name);
	}
	tv_owner_spi_end(&as);
	if (keep)
		MemoryContextSetParent(cxt, TopMemoryContext);
	return c;
}

/* The newest version of a study's schema; 42704 when there is none. */
static MetaSchema *
resolve_schema(StudyConfig *c, const char *name)
{
	ListCell   *lc;
	MetaSchema *s;
	Datum		args[2];
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	bool		isnull;
	TvAsOwner	as;
	MemoryContext old;
	xmltype    *xsd;
	EVP_MD_CTX *md;

	foreach(lc, c->schemas)
	{
		s = lfirst(lc);
		if (strcmp(s->name, name) == 0)
			return s;
	}

	args[0] = CStringGetTextDatum(c->study);
	args[1] = CStringGetTextDatum(name);
	tv_owner_spi_begin(&as);
	/* _current_schema() raises undefined_object when there is none. */
	if (SPI_execute_plan(tv_kept_plan(&schema_plan,
									  "SELECT version, xsd FROM trialvault._current_schema($1, $2)",
									  2, argtypes),
						 args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read metadata schema \"%s\"", name);
	old = MemoryContextSwitchTo(c->cxt);
	s = palloc0(sizeof(MetaSchema));
	s->name = pstrdup(name);
	s->version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	xsd = DatumGetXmlP(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 2, &isnull));
	s->xsd = (xmltype *) PG_DETOAST_DATUM_COPY(PointerGetDatum(xsd));
	md = tv_sha_begin(TV_SHA_SMALL);
	tv_sha_update(md, VARDATA_ANY(s->xsd), VARSIZE_ANY_EXHDR(s->xsd));
	tv_sha_end(md, s->hash);
	c->schemas = lappend(c->schemas, s);
	MemoryContextSwitchTo(old);
	tv_owner_spi_end(&as);
	return s;
}

/*
 * The study's configuration, from the cache when nothing it was read from
 * has changed.  *transient is set when the result is not in the cache; it
 * then lives in the caller's memory context.
 */
static pg_noinline StudyConfig *
study_config(const char *study, bool *transient)
{
	Oid			nsp = get_namespace_oid("trialvault", false);
	uint64		gens[CONFIG_TABLES];
	bool		cacheable = true;
	StudyConfig *c;
	int			i;

	for (i = 0; i < CONFIG_TABLES; i++)
	{
		Oid			relid = get_relname_relid(config_tables[i], nsp);

		if (!OidIsValid(relid))
			elog(ERROR, "table trialvault.%s is missing", config_tables[i]);
		if (!tv_chain_generation(relid, &gens[i]))
			cacheable = false;
	}

	for (i = 0; i < CONFIG_CACHE; i++)
	{
		c = config_cache[i];
		if (c && strcmp(c->study, study) == 0)
		{
			if (cacheable && config_current(c, gens))
			{
				*transient = false;
				return c;
			}
			free_config(c);
			config_cache[i] = NULL;
		}
	}

	c = load_config(study, gens, cacheable);
	*transient = !cacheable;
	if (cacheable)
	{
		if (config_cache[config_cache_next])
			free_config(config_cache[config_cache_next]);
		config_cache[config_cache_next] = c;
		config_cache_next = (config_cache_next + 1) % CONFIG_CACHE;
	}
	return c;
}

/*
 * Value patterns are the costly part of screening: PostgreSQL's regex
 * executor sets up its automata on every call, which for a short value
 * costs far more than the search.  So values without a newline are joined,
 * one per line, and a pattern runs once over them all with newline-
 * sensitive matching (REG_NEWLINE): then ^ and $ match at each value's
 * ends, and . and [^...] cannot cross from one value into the next.  Any
 * match inside a value alone is thus a match in the joined text.  The
 * converse does not hold (\s can match the separator), which is fine: a
 * match only sends the document to the report, which runs every pattern on
 * every value alone.
 *
 * That reasoning fails for constructs that look past a value's ends or
 * change the newline mode: lookahead and lookbehind, embedded options and
 * \A/\Z.  Patterns with "(?", "\A", "\Z" or a "***" director run on each
 * value alone, as do values that contain a newline themselves.
 */
static bool
joined_ok(const char *pattern)
{
	return strstr(pattern, "(?") == NULL && strstr(pattern, "\\A") == NULL &&
		strstr(pattern, "\\Z") == NULL && strstr(pattern, "***") == NULL;
}

/*
 * Does any name or pattern rule possibly match?  A yes is confirmed by the
 * report; a no must be certain.
 */
typedef struct FastScreen
{
	StudyConfig *c;
	bool		hit;
	StringInfoData joined;		/* newline-free values, one per line */
} FastScreen;

static bool
pattern_matches(text *pattern, int cflags, const char *s, int len)
{
	pg_wchar   *wide = palloc((len + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(s, wide, len);
	regex_t    *re = RE_compile_and_cache(pattern, cflags, DEFAULT_COLLATION_OID);
	bool		match = pg_regexec(re, wide, wlen, 0, NULL, 0, NULL, 0) == REG_OKAY;

	pfree(wide);
	return match;
}

/*
 * Name rules compare as lower(name) = lower(rule) does.  When both are
 * plain ASCII, folding ASCII letters decides the same or matches more (a
 * locale may lower 'I' to a dotless i, but never lowers two different ASCII
 * letters alike), which is cheap and safe; otherwise lower() itself runs.
 */
static void
fast_screen_name(FastScreen *fs, const char *kind, const xmlChar *name)
{
	StudyConfig *c = fs->c;
	char		buf[256];
	uint32		h;
	bool		ascii = ascii_lower_hash((const char *) name, buf, sizeof(buf), &h);
	char	   *full = NULL;
	int			i;

	/* ASCII name rules, from the table: one probe instead of every rule. */
	if (ascii && c->nameslots > 0)
	{
		uint32		mask = c->nameslots - 1;
		NameSlot   *s;

		for (i = h & mask; (s = &c->names[i])->name != NULL; i = (i + 1) & mask)
		{
			if (s->hash == h && strcmp(s->name, buf) == 0)
			{
				if (s->kinds & (kind[0] == 'e' ? NAME_ELEMENT : NAME_ATTRIBUTE))
					fs->hit = true;
				break;
			}
		}
	}
	if (ascii && !c->nonascii_names)
		return;

	/* Otherwise as lower() compares, rule by rule. */
	for (i = 0; i < c->nrules && !fs->hit; i++)
	{
		ScreenRule *r = &c->rules[i];

		if (r->kind == 'p' || (r->kind != 'n' && r->kind != kind[0]))
			continue;
		if (ascii && r->ascii)
			continue;			/* the table decided */
		if (full == NULL)
			full = str_tolower((const char *) name, strlen((const char *) name),
							   DEFAULT_COLLATION_OID);
		fs->hit = strcmp(full, r->lowered) == 0;
	}
	if (full)
		pfree(full);
}

static void
fast_screen_value_len(FastScreen *fs, const char *v, int len)
{
	StudyConfig *c = fs->c;
	bool		multiline;
	int			i;

	if (c->npatterns == 0)
		return;
	multiline = memchr(v, '\n', len) != NULL;
	if (!multiline && c->any_joinable)
	{
		put_bytes(&fs->joined, v, len);
		put_char(&fs->joined, '\n');
		if (c->all_joinable)
			return;
	}
	for (i = 0; i < c->npatterns && !fs->hit; i++)
	{
		ScreenRule *r = c->patterns[i];

		if (r->joinable && !multiline)
			continue;
		fs->hit = pattern_matches(r->pattern, REG_ADVANCED, v, len);
	}
}

static void
fast_screen_value(FastScreen *fs, const xmlChar *value)
{
	fast_screen_value_len(fs, (const char *) value, strlen((const char *) value));
}

/* The joinable patterns over the joined values, after the walk. */
static void
fast_screen_joined(FastScreen *fs)
{
	StudyConfig *c = fs->c;
	pg_wchar   *wide;
	int			wlen;
	int			i;

	if (fs->joined.len == 0 || fs->hit)
		return;
	wide = palloc((fs->joined.len + 1) * sizeof(pg_wchar));
	wlen = pg_mb2wchar_with_len(fs->joined.data, wide, fs->joined.len);
	for (i = 0; i < c->nrules && !fs->hit; i++)
	{
		ScreenRule *r = &c->rules[i];
		regex_t    *re;

		if (r->kind != 'p' || !r->joinable || (c->combined && r->in_combined))
			continue;
		re = RE_compile_and_cache(r->pattern, REG_ADVANCED | REG_NEWLINE, DEFAULT_COLLATION_OID);
		fs->hit = pg_regexec(re, wide, wlen, 0, NULL, 0, NULL, 0) == REG_OKAY;
	}
	if (c->combined && !fs->hit)
	{
		regex_t    *re = RE_compile_and_cache(c->combined, REG_ADVANCED | REG_NEWLINE,
											  DEFAULT_COLLATION_OID);

		fs->hit = pg_regexec(re, wide, wlen, 0, NULL, 0, NULL, 0) == REG_OKAY;
	}
	pfree(wide);
}

/* An attribute's value without a copy when it is one text node. */
static void
fast_screen_attr(FastScreen *fs, xmlAttrPtr attr)
{
	xmlNodePtr	t = attr->children;

	fast_screen_name(fs, "attribute", attr->name);
	if (fs->hit)
		return;
	if (t == NULL)
		fast_screen_value(fs, (const xmlChar *) "");
	else if (t->next == NULL && t->type == XML_TEXT_NODE && t->content)
		fast_screen_value(fs, t->content);
	else
	{
		xmlChar    *v = xmlNodeGetContent((xmlNodePtr) attr);

		fast_screen_value(fs, v ? v : (const xmlChar *) "");
		xmlFree(v);
	}
}

static void
fast_screen_nodes(FastScreen *fs, xmlNodePtr node)
{
	check_stack_depth();
	for (; node && !fs->hit; node = node->next)
	{
		if (node->type == XML_ELEMENT_NODE)
		{
			xmlAttrPtr	attr;

			fast_screen_name(fs, "element", node->name);
			for (attr = node->properties; attr && !fs->hit; attr = attr->next)
				fast_screen_attr(fs, attr);
			fast_screen_nodes(fs, node->children);
		}
		else if ((node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE) &&
				 !is_blank(node->content))
			fast_screen_value(fs, node->content);
	}
}

/* An XPath rule matches as xpath_exists() says: a non-empty node set, or any other value. */
static bool
xpath_rule_matches(PgXmlErrorContext *xcxt, xmlDocPtr doc, const char *expr)
{
	xmlXPathContextPtr volatile xpc = NULL;
	xmlXPathObjectPtr volatile res = NULL;
	bool		match = false;

	PG_TRY();
	{
		xpc = xmlXPathNewContext(doc);
		if (xpc == NULL)
			xml_ereport(xcxt, ERROR, ERRCODE_OUT_OF_MEMORY, "could not create an XPath context");
		xpc->node = (xmlNodePtr) doc;
		xpath_budget(xpc);
		res = xmlXPathEvalExpression((const xmlChar *) expr, xpc);
		xpath_check_budget(xpc);
		if (res == NULL || pg_xml_error_occurred(xcxt))
			match = true;		/* let the report say what is wrong */
		else if (res->type == XPATH_NODESET)
			match = res->nodesetval && res->nodesetval->nodeNr > 0;
		else
			match = true;
	}
	PG_CATCH();
	{
		if (res)
			xmlXPathFreeObject(res);
		if (xpc)
			xmlXPathFreeContext(xpc);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (res)
		xmlXPathFreeObject(res);
	xmlXPathFreeContext(xpc);
	return match;
}

/* Let the full check raise the error for what the fast path found. */
static void
report_problem(text *study, xmltype *doc, text *schema_name)
{
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	Oid			argtypes[3] = {TEXTOID, XMLOID, TEXTOID};
	TvAsOwner	as;

	args[0] = PointerGetDatum(study);
	args[1] = PointerGetDatum(doc);
	if (schema_name)
		args[2] = PointerGetDatum(schema_name);
	else
	{
		args[2] = (Datum) 0;
		nulls[2] = 'n';
	}
	tv_owner_spi_begin(&as);
	if (SPI_execute_plan(tv_kept_plan(&report_plan,
									  "SELECT trialvault._check_metadata_report($1, $2, $3)",
									  3, argtypes),
						 args, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not run the metadata report");
	tv_owner_spi_end(&as);
}

/*
 * The streaming path: the common case of inspect_metadata() without a
 * tree.  libxml2 parses with SAX callbacks; the compiled schema validates
 * the same events (xmlSchemaSAXPlug); screening sees every name and value
 * as it passes; and the exclusive C14N is written as the events arrive.
 *
 * The canonical bytes must be exactly those of xmlC14NDocDumpMemory() on
 * the tree (metadata_c14n), which is the definition users and inspectors
 * can reproduce; the tests compare the two on every document they have.
 * The stream renders what that function renders for documents without a
 * DTD: elements as start and end tags, attributes sorted by namespace URI
 * (none first) and local name, a namespace declaration exactly where an
 * element or one of its attributes uses a prefix whose binding no output
 * ancestor rendered (the default namespace counts as rendered empty at the
 * top), declarations sorted by prefix, text and attribute values escaped
 * as C14N says, comments dropped.  For what it does not render (processing
 * instructions, namespace URIs with quotes or markup characters, the xml
 * prefix on an element) it gives up, and the tree path runs instead.
 *
 * Screening follows the tree walk: names are local names, a text node is
 * a run of character data up to the next tag, comment or CDATA boundary,
 * CDATA sections are their own text nodes, and blank ones are skipped.
 */
typedef struct NsRendered
{
	const char *prefix;			/* NULL: the default namespace */
	const char *href;
	int			depth;			/* of the element that rendered it */
} NsRendered;

typedef struct StreamAttr
{
	const char *prefix;
	const char *local;
	const char *uri;			/* NULL: no namespace */
	const char *value;			/* not terminated: len bytes */
	int			len;
} StreamAttr;

typedef struct StreamState
{
	xmlParserCtxtPtr ctxt;
	FastScreen *fs;
	StringInfoData out;			/* the canonical form so far */
	StringInfoData text;		/* the text node being read */
	bool		text_cdata;
	int			depth;
	NsRendered *ns;
	int			nns;
	int			maxns;
	StreamAttr *attrs;			/* room for one element's attributes */
	int			maxattrs;
	bool		doctype;
	bool		fallback;
} StreamState;


/*
 * C14N escapes: in text & < > and CR; in attribute values & < " TAB LF CR.
 * Bit 1 of the table marks text, bit 2 attribute values.
 */
static const uint8 c14n_special[256] = {
	['\t'] = 2,['\n'] = 2,['\r'] = 3,['"'] = 2,['&'] = 3,['<'] = 3,['>'] = 1,
};

static void
c14n_escape(StringInfo out, const char *s, int len, bool attr)
{
	const char *end = s + len;
	const char *run = s;
	uint8		mask = attr ? 2 : 1;

	for (; s < end; s++)
	{
		if (!(c14n_special[(unsigned char) *s] & mask))
			continue;
		put_bytes(out, run, s - run);
		switch (*s)
		{
			case '&':
				PUT_LITERAL(out, "&amp;");
				break;
			case '<':
				PUT_LITERAL(out, "&lt;");
				break;
			case '>':
				PUT_LITERAL(out, "&gt;");
				break;
			case '"':
				PUT_LITERAL(out, "&quot;");
				break;
			case '\t':
				PUT_LITERAL(out, "&#x9;");
				break;
			case '\n':
				PUT_LITERAL(out, "&#xA;");
				break;
			case '\r':
				PUT_LITERAL(out, "&#xD;");
				break;
		}
		run = s + 1;
	}
	put_bytes(out, run, end - run);
}

static void
stream_flush_text(StreamState *st)
{
	if (st->text.len > 0)
	{
		if (!st->fs->hit && !is_blank((const xmlChar *) st->text.data))
			fast_screen_value_len(st->fs, st->text.data, st->text.len);
		resetStringInfo(&st->text);
	}
}

static void
append_qname(StringInfo out, const char *prefix, const char *local)
{
	if (prefix)
	{
		put_bytes(out, prefix, strlen(prefix));
		put_char(out, ':');
	}
	put_bytes(out, local, strlen(local));
}

/* The binding of prefix the output has rendered; NULL when none. */
static const char *
rendered_href(StreamState *st, const char *prefix)
{
	int			i;

	for (i = st->nns - 1; i >= 0; i--)
	{
		const char *p = st->ns[i].prefix;

		if ((p == NULL && prefix == NULL) ||
			(p != NULL && prefix != NULL && strcmp(p, prefix) == 0))
			return st->ns[i].href;
	}
	return prefix == NULL ? "" : NULL;
}

/* The tree path renders a namespace URI with these by other rules. */
static bool
plain_href(const char *href)
{
	for (; *href; href++)
		if (*href == '"' || *href == '\'' || *href == '&' || *href == '<' ||
			*href == '>' || (unsigned char) *href < 0x20)
			return false;
	return true;
}

/* Render prefix's binding on this element unless the output has it already. */
static void
need_ns(StreamState *st, const char *prefix, const char *href)
{
	const char *have = rendered_href(st, prefix);

	if (have != NULL && strcmp(have, href) == 0)
		return;
	if (!plain_href(href))
	{
		st->fallback = true;
		return;
	}
	if (st->nns == st->maxns)
	{
		st->maxns *= 2;
		st->ns = repalloc(st->ns, sizeof(NsRendered) * st->maxns);
	}
	st->ns[st->nns].prefix = prefix ? pstrdup(prefix) : NULL;
	st->ns[st->nns].href = pstrdup(href);
	st->ns[st->nns].depth = st->depth;
	st->nns++;
}

static int
ns_cmp(const void *a, const void *b)
{
	const NsRendered *x = a;
	const NsRendered *y = b;

	if (x->prefix == NULL)
		return y->prefix == NULL ? 0 : -1;
	if (y->prefix == NULL)
		return 1;
	return strcmp(x->prefix, y->prefix);
}

static int
attr_cmp(const void *a, const void *b)
{
	const StreamAttr *x = a;
	const StreamAttr *y = b;
	int			r;

	if (x->uri == NULL && y->uri != NULL)
		return -1;
	if (x->uri != NULL && y->uri == NULL)
		return 1;
	if (x->uri != NULL && (r = strcmp(x->uri, y->uri)) != 0)
		return r;
	return strcmp(x->local, y->local);
}

/* Few items to sort per element: insertion sort, no qsort() call. */
static void
sort_ns(NsRendered *a, int n)
{
	int			i;
	int			j;

	for (i = 1; i < n; i++)
	{
		NsRendered	t = a[i];

		for (j = i; j > 0 && ns_cmp(&a[j - 1], &t) > 0; j--)
			a[j] = a[j - 1];
		a[j] = t;
	}
}

static void
sort_attrs(StreamAttr *a, int n)
{
	int			i;
	int			j;

	for (i = 1; i < n; i++)
	{
		StreamAttr	t = a[i];

		for (j = i; j > 0 && attr_cmp(&a[j - 1], &t) > 0; j--)
			a[j] = a[j - 1];
		a[j] = t;
	}
}

static void
stream_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
			 const xmlChar *URI, int nb_namespaces, const xmlChar **namespaces,
			 int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
	StreamState *st = (StreamState *) ctx;
	FastScreen *fs = st->fs;
	StreamAttr *attrs;
	int			first_new;
	int			i;

	stream_flush_text(st);
	st->depth++;
	if (!fs->hit)
		fast_screen_name(fs, "element", localname);
	if (nb_attributes > st->maxattrs)
	{
		st->maxattrs = Max(nb_attributes, 2 * st->maxattrs);
		st->attrs = st->attrs ? repalloc(st->attrs, sizeof(StreamAttr) * st->maxattrs) :
			palloc(sizeof(StreamAttr) * st->maxattrs);
	}
	attrs = st->attrs;
	for (i = 0; i < nb_attributes; i++)
	{
		const xmlChar **a = attributes + 5 * i;

		attrs[i].local = (const char *) a[0];
		attrs[i].prefix = (const char *) a[1];
		attrs[i].uri = (const char *) a[2];
		attrs[i].value = (const char *) a[3];
		attrs[i].len = a[4] - a[3];
		if (!fs->hit)
			fast_screen_name(fs, "attribute", a[0]);
		if (!fs->hit)
			fast_screen_value_len(fs, attrs[i].value, attrs[i].len);
	}
	if (nb_defaulted > 0 ||
		(prefix && strcmp((const char *) prefix, "xml") == 0))
		st->fallback = true;
	/* A relative namespace URI: the tree path refuses it, with its reason. */
	for (i = 0; i < nb_namespaces && !st->fallback; i++)
		if (!namespace_uri_absolute(namespaces[2 * i + 1]))
			st->fallback = true;
	if (st->fallback)
		return;

	first_new = st->nns;
	need_ns(st, (const char *) prefix, URI ? (const char *) URI : "");
	for (i = 0; i < nb_attributes; i++)
		if (attrs[i].prefix && strcmp(attrs[i].prefix, "xml") != 0)
			need_ns(st, attrs[i].prefix, attrs[i].uri);
	if (st->fallback)
		return;

	put_char(&st->out, '<');
	append_qname(&st->out, (const char *) prefix, (const char *) localname);
	sort_ns(st->ns + first_new, st->nns - first_new);
	for (i = first_new; i < st->nns; i++)
	{
		if (st->ns[i].prefix)
		{
			PUT_LITERAL(&st->out, " xmlns:");
			put_bytes(&st->out, st->ns[i].prefix, strlen(st->ns[i].prefix));
			PUT_LITERAL(&st->out, "=\"");
		}
		else
			PUT_LITERAL(&st->out, " xmlns=\"");
		put_bytes(&st->out, st->ns[i].href, strlen(st->ns[i].href));
		put_char(&st->out, '"');
	}
	sort_attrs(attrs, nb_attributes);
	for (i = 0; i < nb_attributes; i++)
	{
		put_char(&st->out, ' ');
		append_qname(&st->out, attrs[i].prefix, attrs[i].local);
		PUT_LITERAL(&st->out, "=\"");
		c14n_escape(&st->out, attrs[i].value, attrs[i].len, true);
		put_char(&st->out, '"');
	}
	put_char(&st->out, '>');
}

static void
stream_end(void *ctx, const xmlChar *localname, const xmlChar *prefix,
		   const xmlChar *URI)
{
	StreamState *st = (StreamState *) ctx;

	stream_flush_text(st);
	if (!st->fallback)
	{
		PUT_LITERAL(&st->out, "</");
		append_qname(&st->out, (const char *) prefix, (const char *) localname);
		put_char(&st->out, '>');
	}
	while (st->nns > 0 && st->ns[st->nns - 1].depth == st->depth)
		st->nns--;
	st->depth--;
}

static void
stream_text(StreamState *st, const xmlChar *ch, int len, bool cdata)
{
	if (st->depth == 0)
		return;
	if (st->text.len > 0 && st->text_cdata != cdata)
		stream_flush_text(st);
	st->text_cdata = cdata;
	put_bytes(&st->text, (const char *) ch, len);
	if (!st->fallback)
		c14n_escape(&st->out, (const char *) ch, len, false);
}

static void
stream_characters(void *ctx, const xmlChar *ch, int len)
{
	stream_text((StreamState *) ctx, ch, len, false);
}

static void
stream_cdata(void *ctx, const xmlChar *ch, int len)
{
	stream_text((StreamState *) ctx, ch, len, true);
}

static void
stream_comment(void *ctx, const xmlChar *value)
{
	stream_flush_text((StreamState *) ctx);
}

static void
stream_pi(void *ctx, const xmlChar *target, const xmlChar *data)
{
	StreamState *st = (StreamState *) ctx;

	stream_flush_text(st);
	st->fallback = true;
}

static void
stream_doctype(void *ctx, const xmlChar *name, const xmlChar *ExternalID,
			   const xmlChar *SystemID)
{
	StreamState *st = (StreamState *) ctx;

	st->doctype = true;
	xmlStopParser(st->ctxt);
}

typedef enum Verdict
{
	VERDICT_CLEAN,
	VERDICT_PHI,				/* a screening rule may match */
	VERDICT_INVALID,			/* not valid against the schema */
	VERDICT_FALLBACK			/* the stream cannot tell: use the tree */
} Verdict;

static Verdict
inspect_stream(PgXmlErrorContext *xcxt, xmltype *x, StudyConfig *c,
			   xmlSchemaPtr schema, uint8 *hash)
{
	int			len = VARSIZE_ANY_EXHDR(x);
	xmlSAXHandler sax;
	StreamState st;
	FastScreen	fs;
	xmlParserCtxtPtr volatile ctxt = NULL;
	xmlSchemaValidCtxtPtr volatile vctxt = NULL;
	xmlSchemaSAXPlugPtr volatile plug = NULL;
	xmlCharEncodingHandlerPtr utf8;
	bool		wellformed;
	volatile bool valid = true;
	EVP_MD_CTX *md;

	check_size("metadata", len);
	memset(&sax, 0, sizeof(sax));
	sax.initialized = XML_SAX2_MAGIC;
	sax.startElementNs = stream_start;
	sax.endElementNs = stream_end;
	sax.characters = stream_characters;
	sax.ignorableWhitespace = stream_characters;
	sax.cdataBlock = stream_cdata;
	sax.comment = stream_comment;
	sax.processingInstruction = stream_pi;
	sax.internalSubset = stream_doctype;

	memset(&st, 0, sizeof(st));
	fs.c = c;
	fs.hit = false;
	initStringInfo(&fs.joined);
	st.fs = &fs;
	initStringInfo(&st.out);
	/* The canonical form is about as long as the text: grow once, not often. */
	enlargeStringInfo(&st.out, len + len / 4);
	enlargeStringInfo(&fs.joined, len);
	initStringInfo(&st.text);
	st.maxns = 8;
	st.ns = palloc(sizeof(NsRendered) * st.maxns);

	PG_TRY();
	{
		ctxt = xmlCreateMemoryParserCtxt(VARDATA_ANY(x), len);
		if (ctxt == NULL)
			xml_ereport(xcxt, ERROR, ERRCODE_OUT_OF_MEMORY, "could not create an XML parser");
		st.ctxt = ctxt;
		memcpy(ctxt->sax, &sax, sizeof(sax));
		ctxt->userData = &st;
		/* As xmlReadMemory(..., "UTF-8", ...) does for the tree path. */
		xmlCtxtUseOptions(ctxt, XML_PARSE_NOENT | XML_PARSE_NONET | XML_PARSE_NOWARNING);
		if (ctxt->encoding)
			xmlFree((xmlChar *) ctxt->encoding);
		ctxt->encoding = xmlStrdup((const xmlChar *) "UTF-8");
		utf8 = xmlFindCharEncodingHandler("UTF-8");
		if (utf8)
			xmlSwitchToEncoding(ctxt, utf8);
		if (schema)
		{
			vctxt = xmlSchemaNewValidCtxt(schema);
			if (vctxt == NULL)
				xml_ereport(xcxt, ERROR, ERRCODE_OUT_OF_MEMORY, "could not create a schema validator");
			xmlSchemaSetValidStructuredErrors(vctxt, ignore_error, NULL);
			plug = xmlSchemaSAXPlug(vctxt, &ctxt->sax, &ctxt->userData);
			if (plug == NULL)
				xml_ereport(xcxt, ERROR, ERRCODE_OUT_OF_MEMORY, "could not attach the schema validator");
		}
		(void) xmlParseDocument(ctxt);
		wellformed = ctxt->wellFormed && !st.doctype && !pg_xml_error_occurred(xcxt);
		if (plug)
		{
			xmlSchemaSAXUnplug(plug);
			plug = NULL;
			valid = xmlSchemaIsValid(vctxt) == 1;
		}
		if (st.doctype)
			refuse_doctype("metadata");
		if (!wellformed)
			xml_ereport(xcxt, ERROR, ERRCODE_INVALID_XML_DOCUMENT,
						"metadata is not a well-formed XML document");
	}
	PG_CATCH();
	{
		if (plug)
			xmlSchemaSAXUnplug(plug);
		if (vctxt)
			xmlSchemaFreeValidCtxt(vctxt);
		if (ctxt)
			xmlFreeParserCtxt(ctxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (vctxt)
		xmlSchemaFreeValidCtxt(vctxt);
	xmlFreeParserCtxt(ctxt);

	if (!fs.hit)
		fast_screen_joined(&fs);
	if (fs.hit)
		return VERDICT_PHI;
	if (!valid)
		return VERDICT_INVALID;
	if (st.fallback)
		return VERDICT_FALLBACK;
	md = tv_sha_begin(TV_SHA_SMALL);
	tv_sha_update(md, st.out.data, st.out.len);
	tv_sha_end(md, hash);
	return VERDICT_CLEAN;
}

/* The tree path: everything the stream does, on a parsed document. */
static Verdict
inspect_tree(PgXmlErrorContext *xcxt, xmltype *x, StudyConfig *c,
			 xmlSchemaPtr schema, uint8 *hash)
{
	xmlDocPtr volatile doc = NULL;
	xmlChar    *volatile canon = NULL;
	xmlSchemaValidCtxtPtr volatile vctxt = NULL;
	volatile Verdict verdict = VERDICT_CLEAN;

	PG_TRY();
	{
		FastScreen	fs;
		int			i;
		int			len;

		doc = parse_doc(xcxt, x, "metadata");

		/* Screen first: PHI is refused by rule before anything could quote it. */
		fs.c = c;
		fs.hit = false;
		initStringInfo(&fs.joined);
		fast_screen_nodes(&fs, xmlDocGetRootElement(doc));
		fast_screen_joined(&fs);
		for (i = 0; i < c->nxpaths && !fs.hit; i++)
			fs.hit = xpath_rule_matches(xcxt, doc, c->xpaths[i]);
		if (fs.hit)
			verdict = VERDICT_PHI;

		if (verdict == VERDICT_CLEAN && schema)
		{
			vctxt = xmlSchemaNewValidCtxt(schema);
			if (vctxt == NULL)
				xml_ereport(xcxt, ERROR, ERRCODE_OUT_OF_MEMORY, "could not create a schema validator");
			xmlSchemaSetValidStructuredErrors(vctxt, ignore_error, NULL);
			if (xmlSchemaValidateDoc(vctxt, doc) != 0)
				verdict = VERDICT_INVALID;
		}

		if (verdict == VERDICT_CLEAN)
		{
			EVP_MD_CTX *md;

			refuse_relative_namespaces(xmlDocGetRootElement(doc));
			len = xmlC14NDocDumpMemory(doc, NULL, XML_C14N_EXCLUSIVE_1_0, NULL, 0,
									   (xmlChar **) &canon);
			if (len < 0 || canon == NULL)
				xml_ereport(xcxt, ERROR, ERRCODE_INVALID_XML_DOCUMENT,
							"could not canonicalize metadata");
			md = tv_sha_begin(TV_SHA_SMALL);
			tv_sha_update(md, canon, len);
			tv_sha_end(md, hash);
		}
	}
	PG_CATCH();
	{
		if (vctxt)
			xmlSchemaFreeValidCtxt(vctxt);
		if (canon)
			xmlFree(canon);
		if (doc)
			xmlFreeDoc(doc);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (vctxt)
		xmlSchemaFreeValidCtxt(vctxt);
	if (canon)
		xmlFree(canon);
	xmlFreeDoc(doc);
	return verdict;
}

/* Study codes and schema names are at most 64 bytes (the tables' CHECKs). */
static void
check_identifier(const char *what, const char *s)
{
	if (strlen(s) > 64)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("%s is too long: %d bytes", what, (int) strlen(s)),
				 errhint("Study codes and metadata schema names have at most 64 characters.")));
}

PG_FUNCTION_INFO_V1(tv_inspect_metadata);

/*
 * trialvault.inspect_metadata(study text, doc xml, schema_name text)
 *	 RETURNS (checked_schema text, checked_version integer,
 *			  metadata_sha256 bytea)
 */
Datum
tv_inspect_metadata(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	text	   *study_t;
	xmltype    *x;
	text	   *schema_t = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	char	   *study;
	const char *sname;
	StudyConfig *c;
	bool		transient;
	MetaSchema *ms = NULL;
	PgXmlErrorContext *xcxt;
	volatile Verdict verdict = VERDICT_FALLBACK;
	uint8		hash[TV_HASH_LEN];
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("arguments of trialvault.inspect_metadata must not be NULL (only schema_name may be)")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "inspect_metadata must return a record");
	study_t = PG_GETARG_TEXT_PP(0);
	x = PG_GETARG_XML_P(1);
	study = text_to_cstring(study_t);
	check_identifier("study code", study);
	if (schema_t)
		check_identifier("metadata schema name", text_to_cstring(schema_t));

	c = study_config(study, &transient);
	sname = schema_t ? text_to_cstring(schema_t) : c->default_schema;
	if (sname)
		ms = resolve_schema(c, sname);

	xcxt = pg_xml_init(PG_XML_STRICTNESS_ALL);
	PG_TRY();
	{
		xmlSchemaPtr schema = ms ? cached_schema(xcxt, ms->xsd, ms->hash) : NULL;

		/* XPath rules need the tree. */
		if (c->nxpaths == 0)
			verdict = inspect_stream(xcxt, x, c, schema, hash);
		/* Which path ran: the C14N differential test counts them. */
		ereport(DEBUG2,
				(errmsg_internal("trialvault: inspect_metadata took the %s path",
								 verdict == VERDICT_FALLBACK ? "tree" : "streaming")));
		if (verdict == VERDICT_FALLBACK)
			verdict = inspect_tree(xcxt, x, c, schema, hash);
	}
	PG_CATCH();
	{
		pg_xml_done(xcxt, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pg_xml_done(xcxt, false);

	if (verdict == VERDICT_INVALID)
	{
		report_problem(study_t, x, schema_t);
		/* Not reached unless the schema changed in between: refuse anyway. */
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_XML_DOCUMENT),
				 errmsg("metadata is not valid against schema \"%s\" of study \"%s\"",
						sname, study)));
	}
	if (verdict == VERDICT_PHI)
	{
		/*
		 * The report screens and validates as the SQL functions do and raises
		 * what it finds.  When it finds nothing, the fast name comparison
		 * matched more than lower() does: the metadata is clean and valid.
		 */
		report_problem(study_t, x, schema_t);
		canonical_sha256(x, hash);
	}

	if (ms)
	{
		values[0] = CStringGetTextDatum(ms->name);
		values[1] = Int32GetDatum(ms->version);
	}
	else
		nulls[0] = nulls[1] = true;
	values[2] = PointerGetDatum(tv_hash_bytea(hash));
	if (transient)
		free_config(c);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
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
	DefineCustomIntVariable("trialvault.xpath_max_steps",
							"Most steps one XPath evaluation over metadata may take.",
							"XPath evaluation cannot be interrupted while it runs; this bounds how long statement_timeout and pg_cancel_backend() may have to wait.",
							&tv_xpath_max_steps,
							20000000, 1000, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
}
