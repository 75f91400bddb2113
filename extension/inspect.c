/*-------------------------------------------------------------------------
 *
 * inspect.c
 *		inspect_metadata(): everything document loading needs of the
 *		metadata (PHI screening, validation, the canonical SHA-256), from one
 *		parse.
 *
 * check_metadata() used to screen, validate and hash through three
 * functions that each parsed the document again, with the study's rules
 * and schema looked up in SQL on every call.  Here the document is parsed
 * once, the study's rules and schema come from a per-backend cache, and
 * screening, validation and C14N run on that one parse: as SAX events (the
 * streaming path), or on a tree when an XPath rule needs one or the
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
 *
 * The streaming path: libxml2 parses with SAX callbacks; the compiled
 * schema validates the same events (xmlSchemaSAXPlug); the fast screen
 * sees every name and value as it passes; and c14n.c's writer renders the
 * canonical form as the events arrive.  Screening follows the tree walk:
 * names are local names, a text node is a run of character data up to the
 * next tag, comment or CDATA boundary, CDATA sections are their own text
 * nodes, and blank ones are skipped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/xml.h"

#include "xmlmeta.h"

typedef struct MetaSchema
{
	char	   *name;
	int32		version;
	uint8		hash[TV_HASH_LEN];	/* of the XSD text: the schema_cache key */
	xmltype    *xsd;
} MetaSchema;

typedef struct StudyConfig
{
	char	   *study;
	MemoryContext cxt;
	uint64		gens[3];		/* phi_rules, metadata_schemas, metadata_defaults */
	ScreenRules screen;			/* the study's PHI rules, compiled */
	char	   *default_schema; /* NULL: none */
	List	   *schemas;		/* MetaSchema *, resolved so far */
} StudyConfig;

#define CONFIG_CACHE 16
#define CONFIG_TABLES 3

static const char *const config_tables[CONFIG_TABLES] = {
	"phi_rules", "metadata_schemas", "metadata_defaults"
};
static StudyConfig *config_cache[CONFIG_CACHE];
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

/* Rows of the cache's tables committed since gens were read? */
static bool
config_current(StudyConfig *c, const uint64 *gens)
{
	return memcmp(c->gens, gens, sizeof(c->gens)) == 0;
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
	tv_screen_rules_init(&c->screen, (int) SPI_processed);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(tup, td, 1);
		char	   *kind = SPI_getvalue(tup, td, 2);
		char	   *expr = SPI_getvalue(tup, td, 3);

		if (name == NULL || kind == NULL || expr == NULL)
			continue;
		tv_screen_rules_add(&c->screen, cstring_to_text(name), kind, expr);
	}
	tv_screen_rules_finish(&c->screen);
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

/* The streaming path's state, for the SAX callbacks. */
typedef struct StreamState
{
	xmlParserCtxtPtr ctxt;
	FastScreen *fs;
	C14nStream c14n;
	StringInfoData text;		/* the text node being read */
	bool		text_cdata;
	bool		doctype;
} StreamState;

static void
stream_flush_text(StreamState *st)
{
	if (st->text.len > 0)
	{
		if (!st->fs->hit && !tv_xml_is_blank((const xmlChar *) st->text.data))
			tv_fast_screen_value_len(st->fs, st->text.data, st->text.len);
		resetStringInfo(&st->text);
	}
}

static void
stream_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
			 const xmlChar *URI, int nb_namespaces, const xmlChar **namespaces,
			 int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
	StreamState *st = (StreamState *) ctx;
	FastScreen *fs = st->fs;
	int			i;

	stream_flush_text(st);
	if (!fs->hit)
		tv_fast_screen_name(fs, "element", localname);
	for (i = 0; i < nb_attributes && !fs->hit; i++)
	{
		const xmlChar **a = attributes + 5 * i;

		tv_fast_screen_name(fs, "attribute", a[0]);
		if (!fs->hit)
			tv_fast_screen_value_len(fs, (const char *) a[3], a[4] - a[3]);
	}
	tv_c14n_stream_start(&st->c14n, localname, prefix, URI, nb_namespaces, namespaces,
						 nb_attributes, nb_defaulted, attributes);
}

static void
stream_end(void *ctx, const xmlChar *localname, const xmlChar *prefix,
		   const xmlChar *URI)
{
	StreamState *st = (StreamState *) ctx;

	stream_flush_text(st);
	tv_c14n_stream_end(&st->c14n, localname, prefix);
}

static void
stream_text(StreamState *st, const xmlChar *ch, int len, bool cdata)
{
	if (st->c14n.depth == 0)
		return;
	if (st->text.len > 0 && st->text_cdata != cdata)
		stream_flush_text(st);
	st->text_cdata = cdata;
	put_bytes(&st->text, (const char *) ch, len);
	tv_c14n_stream_text(&st->c14n, ch, len);
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

/* The writer does not render processing instructions: the tree path will. */
static void
stream_pi(void *ctx, const xmlChar *target, const xmlChar *data)
{
	StreamState *st = (StreamState *) ctx;

	stream_flush_text(st);
	st->c14n.gave_up = true;
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

	tv_xml_check_size("metadata", len);
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
	tv_fast_screen_begin(&fs, &c->screen, len);
	st.fs = &fs;
	tv_c14n_stream_begin(&st.c14n, len);
	initStringInfo(&st.text);

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
			xmlSchemaSetValidStructuredErrors(vctxt, tv_xml_ignore_error, NULL);
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
			tv_xml_refuse_doctype("metadata");
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
		tv_fast_screen_end(&fs);
	if (fs.hit)
		return VERDICT_PHI;
	if (!valid)
		return VERDICT_INVALID;
	if (st.c14n.gave_up)
		return VERDICT_FALLBACK;
	md = tv_sha_begin(TV_SHA_SMALL);
	tv_sha_update(md, st.c14n.out.data, st.c14n.out.len);
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

		doc = tv_xml_parse(xcxt, x, "metadata");

		/* Screen first: PHI is refused by rule before anything could quote it. */
		tv_fast_screen_begin(&fs, &c->screen, VARSIZE_ANY_EXHDR(x));
		tv_fast_screen_tree(&fs, xmlDocGetRootElement(doc));
		if (!fs.hit)
			tv_fast_screen_end(&fs);
		for (i = 0; i < c->screen.nxpaths && !fs.hit; i++)
			fs.hit = tv_xpath_rule_matches(xcxt, doc, c->screen.xpaths[i]);
		if (fs.hit)
			verdict = VERDICT_PHI;

		if (verdict == VERDICT_CLEAN && schema)
		{
			vctxt = xmlSchemaNewValidCtxt(schema);
			if (vctxt == NULL)
				xml_ereport(xcxt, ERROR, ERRCODE_OUT_OF_MEMORY, "could not create a schema validator");
			xmlSchemaSetValidStructuredErrors(vctxt, tv_xml_ignore_error, NULL);
			if (xmlSchemaValidateDoc(vctxt, doc) != 0)
				verdict = VERDICT_INVALID;
		}

		if (verdict == VERDICT_CLEAN)
		{
			EVP_MD_CTX *md;

			len = tv_c14n_tree(xcxt, doc, (xmlChar **) &canon);
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

/*
 * Screen, validate and hash a study's metadata (see the file header);
 * raises the error users see when it is refused.  schema_t NULL: the
 * study's default schema, if it has one.
 */
void
tv_inspect(text *study_t, xmltype *x, text *schema_t, TvInspection *out)
{
	char	   *study;
	const char *sname;
	StudyConfig *c;
	bool		transient;
	MetaSchema *volatile ms = NULL;
	PgXmlErrorContext *xcxt;
	volatile Verdict verdict = VERDICT_FALLBACK;

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
		xmlSchemaPtr schema = ms ? tv_xml_cached_schema(xcxt, ms->xsd, ms->hash) : NULL;

		/* XPath rules need the tree. */
		if (c->screen.nxpaths == 0)
			verdict = inspect_stream(xcxt, x, c, schema, out->hash);
		/* Which path ran: the C14N differential test counts them. */
		ereport(DEBUG2,
				(errmsg_internal("trialvault: inspect_metadata took the %s path",
								 verdict == VERDICT_FALLBACK ? "tree" : "streaming")));
		if (verdict == VERDICT_FALLBACK)
			verdict = inspect_tree(xcxt, x, c, schema, out->hash);
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
		tv_c14n_sha256(x, out->hash);
	}

	out->schema = ms ? pstrdup(ms->name) : NULL;
	out->version = ms ? ms->version : 0;
	if (transient)
		free_config(c);
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
	TvInspection ins;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("arguments of trialvault.inspect_metadata must not be NULL (only schema_name may be)")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "inspect_metadata must return a record");
	tv_inspect(PG_GETARG_TEXT_PP(0), PG_GETARG_XML_P(1),
			   PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2), &ins);
	if (ins.schema)
	{
		values[0] = CStringGetTextDatum(ins.schema);
		values[1] = Int32GetDatum(ins.version);
	}
	else
		nulls[0] = nulls[1] = true;
	values[2] = PointerGetDatum(tv_hash_bytea(ins.hash));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
