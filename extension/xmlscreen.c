/*-------------------------------------------------------------------------
 *
 * xmlscreen.c
 *		PHI screening of metadata: the rules of a study, compiled, and two
 *		ways of running them over a document.
 *
 * A study's rules (trialvault.phi_rules) name elements, attributes or
 * either that must not appear (compared case-insensitively, as lower()
 * does), regular expressions no attribute value or text may match, and
 * XPath expressions that must select nothing.
 *
 * The reference is screen_metadata(): _screen_nodes() below walks the tree
 * and reports every match of the name and pattern rules with its path, and
 * the SQL around it evaluates the XPath rules with xpath_exists().  That is
 * what users see when metadata is refused.
 *
 * Document loading asks only whether any rule might match (the fast screen
 * below, run by inspect.c on the SAX events or on the tree), and a yes is
 * confirmed by the reference before anything is refused; so the fast screen
 * may match more than the reference but never less.  It compares ASCII
 * names through a hash table and runs joinable patterns once over all
 * values (see joined_ok()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libxml/tree.h>
#include <libxml/xpath.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/hsearch.h"
#include "utils/xml.h"

#include "xmlmeta.h"

#define NAME_ELEMENT	1
#define NAME_ATTRIBUTE	2

static bool joined_ok(const char *pattern);

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

/* The table tv_fast_screen_name() probes, in the current memory context. */
static void
build_name_table(ScreenRules *rs)
{
	int			n = 0;
	int			i;

	for (i = 0; i < rs->nrules; i++)
		if (rs->rules[i].kind != 'p' && rs->rules[i].ascii)
			n++;
	if (n == 0)
		return;
	rs->nameslots = 8;
	while (rs->nameslots < 2 * n)
		rs->nameslots *= 2;
	rs->names = palloc0(sizeof(NameSlot) * rs->nameslots);
	for (i = 0; i < rs->nrules; i++)
	{
		ScreenRule *r = &rs->rules[i];
		uint32		h = r->ascii_hash;
		int			kinds;
		int			j;

		if (r->kind == 'p' || r->ascii == NULL)
			continue;
		kinds = r->kind == 'e' ? NAME_ELEMENT : r->kind == 'a' ? NAME_ATTRIBUTE :
			NAME_ELEMENT | NAME_ATTRIBUTE;
		for (j = h & (rs->nameslots - 1); rs->names[j].name != NULL &&
			 !(rs->names[j].hash == h && strcmp(rs->names[j].name, r->ascii) == 0);
			 j = (j + 1) & (rs->nameslots - 1))
			;
		rs->names[j].name = r->ascii;
		rs->names[j].hash = h;
		rs->names[j].kinds |= kinds;
	}
}

/*
 * The joinable patterns as one regex, (?:p1)|(?:p2)|..., so that the joined
 * values are searched once: one match of the alternation is a match of one
 * of them.  A pattern with a back reference (\\1) stays out, since the
 * groups of the patterns before it would renumber its own.
 */
static void
combine_patterns(ScreenRules *rs)
{
	StringInfoData buf;
	int			n = 0;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < rs->nrules; i++)
	{
		ScreenRule *r = &rs->rules[i];
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
		rs->combined = cstring_to_text_with_len(buf.data, buf.len);
}

/* The pattern rules, for the per-value loop. */
static void
list_patterns(ScreenRules *rs)
{
	int			i;

	rs->patterns = palloc(sizeof(ScreenRule *) * Max(rs->nrules, 1));
	rs->all_joinable = true;
	for (i = 0; i < rs->nrules; i++)
	{
		if (rs->rules[i].kind != 'p')
			continue;
		rs->patterns[rs->npatterns++] = &rs->rules[i];
		if (rs->rules[i].joinable)
			rs->any_joinable = true;
		else
			rs->all_joinable = false;
	}
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
 * match only sends the document to the reference, which runs every pattern on
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

/* ---------------------------------------------------------------------
 * Compiling rules
 * ---------------------------------------------------------------------
 */

/* Room for maxrules rules, in the current memory context. */
void
tv_screen_rules_init(ScreenRules *rs, int maxrules)
{
	memset(rs, 0, sizeof(*rs));
	rs->maxrules = Max(maxrules, 1);
	rs->rules = palloc0(sizeof(ScreenRule) * rs->maxrules);
	rs->xpaths = palloc0(sizeof(char *) * rs->maxrules);
}

/*
 * One rule as phi_rules stores it (kind element, attribute, name, pattern
 * or xpath).  Unknown kinds are skipped: the table's CHECK allows none.
 */
void
tv_screen_rules_add(ScreenRules *rs, text *name, const char *kind, const char *expr)
{
	ScreenRule *r;

	if (rs->nrules + rs->nxpaths >= rs->maxrules)
		elog(ERROR, "more PHI screening rules than announced");
	r = &rs->rules[rs->nrules];
	if (strcmp(kind, "xpath") == 0)
	{
		rs->xpaths[rs->nxpaths++] = pstrdup(expr);
		return;
	}
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
			rs->nonascii_names = true;
		rs->any_names = true;
	}
	else
		return;
	r->rule_name = DatumGetTextPCopy(PointerGetDatum(name));
	rs->nrules++;
}

/* After the last rule: the tables the fast screen uses. */
void
tv_screen_rules_finish(ScreenRules *rs)
{
	build_name_table(rs);
	list_patterns(rs);
	combine_patterns(rs);
}

/* ---------------------------------------------------------------------
 * The reference: every match, with its path
 * ---------------------------------------------------------------------
 */

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
				 !tv_xml_is_blank(node->content))
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

		doc = tv_xml_parse(xcxt, x, "metadata");
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

/*
 * _screen_nodes(), for screen_metadata():
 * element, attribute and name rules compare names case-insensitively (as
 * lower() does), pattern rules run the regex on attribute values and text.
 * XPath rules stay in SQL (xpath_exists), where their semantics live.
 */
typedef struct ScreenState
{
	ReturnSetInfo *rsinfo;
	ScreenRules *rs;
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

	if (name && st->rs->any_names)
		lname = str_tolower((const char *) name, strlen((const char *) name),
							DEFAULT_COLLATION_OID);
	for (i = 0; i < st->rs->nrules; i++)
	{
		ScreenRule *r = &st->rs->rules[i];

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
	ScreenRules rs;
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

	tv_screen_rules_init(&rs, nn);
	for (i = 0; i < nn; i++)
	{
		if (nnull[i] || knull[i] || enull[i])
			continue;
		tv_screen_rules_add(&rs, DatumGetTextPP(names[i]), TextDatumGetCString(kinds[i]),
							TextDatumGetCString(exprs[i]));
	}
	st.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	st.rs = &rs;

	InitMaterializedSRF(fcinfo, 0);
	walk_document(PG_GETARG_XML_P(0), screen_node, &st);
	return (Datum) 0;
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

/* ---------------------------------------------------------------------
 * The fast screen
 * ---------------------------------------------------------------------
 */

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
void
tv_fast_screen_name(FastScreen *fs, const char *kind, const xmlChar *name)
{
	ScreenRules *rs = fs->rules;
	char		buf[256];
	uint32		h;
	bool		ascii = ascii_lower_hash((const char *) name, buf, sizeof(buf), &h);
	char	   *full = NULL;
	int			i;

	/* ASCII name rules, from the table: one probe instead of every rule. */
	if (ascii && rs->nameslots > 0)
	{
		uint32		mask = rs->nameslots - 1;
		NameSlot   *s;

		for (i = h & mask; (s = &rs->names[i])->name != NULL; i = (i + 1) & mask)
		{
			if (s->hash == h && strcmp(s->name, buf) == 0)
			{
				if (s->kinds & (kind[0] == 'e' ? NAME_ELEMENT : NAME_ATTRIBUTE))
					fs->hit = true;
				break;
			}
		}
	}
	if (ascii && !rs->nonascii_names)
		return;

	/* Otherwise as lower() compares, rule by rule. */
	for (i = 0; i < rs->nrules && !fs->hit; i++)
	{
		ScreenRule *r = &rs->rules[i];

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

void
tv_fast_screen_value_len(FastScreen *fs, const char *v, int len)
{
	ScreenRules *rs = fs->rules;
	bool		multiline;
	int			i;

	if (rs->npatterns == 0)
		return;
	multiline = memchr(v, '\n', len) != NULL;
	if (!multiline && rs->any_joinable)
	{
		put_bytes(&fs->joined, v, len);
		put_char(&fs->joined, '\n');
		if (rs->all_joinable)
			return;
	}
	for (i = 0; i < rs->npatterns && !fs->hit; i++)
	{
		ScreenRule *r = rs->patterns[i];

		if (r->joinable && !multiline)
			continue;
		fs->hit = pattern_matches(r->pattern, REG_ADVANCED, v, len);
	}
}

static void
fast_screen_value(FastScreen *fs, const xmlChar *value)
{
	tv_fast_screen_value_len(fs, (const char *) value, strlen((const char *) value));
}

/* The joinable patterns over the joined values, after the walk. */
static void
fast_screen_joined(FastScreen *fs)
{
	ScreenRules *rs = fs->rules;
	pg_wchar   *wide;
	int			wlen;
	int			i;

	if (fs->joined.len == 0 || fs->hit)
		return;
	wide = palloc((fs->joined.len + 1) * sizeof(pg_wchar));
	wlen = pg_mb2wchar_with_len(fs->joined.data, wide, fs->joined.len);
	for (i = 0; i < rs->nrules && !fs->hit; i++)
	{
		ScreenRule *r = &rs->rules[i];
		regex_t    *re;

		if (r->kind != 'p' || !r->joinable || (rs->combined && r->in_combined))
			continue;
		re = RE_compile_and_cache(r->pattern, REG_ADVANCED | REG_NEWLINE, DEFAULT_COLLATION_OID);
		fs->hit = pg_regexec(re, wide, wlen, 0, NULL, 0, NULL, 0) == REG_OKAY;
	}
	if (rs->combined && !fs->hit)
	{
		regex_t    *re = RE_compile_and_cache(rs->combined, REG_ADVANCED | REG_NEWLINE,
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

	tv_fast_screen_name(fs, "attribute", attr->name);
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

			tv_fast_screen_name(fs, "element", node->name);
			for (attr = node->properties; attr && !fs->hit; attr = attr->next)
				fast_screen_attr(fs, attr);
			fast_screen_nodes(fs, node->children);
		}
		else if ((node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE) &&
				 !tv_xml_is_blank(node->content))
			fast_screen_value(fs, node->content);
	}
}

/* An XPath rule matches as xpath_exists() says: a non-empty node set, or any other value. */
bool
tv_xpath_rule_matches(PgXmlErrorContext *xcxt, xmlDocPtr doc, const char *expr)
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
		tv_xpath_budget(xpc);
		res = xmlXPathEvalExpression((const xmlChar *) expr, xpc);
		tv_xpath_check_budget(xpc);
		if (res == NULL || pg_xml_error_occurred(xcxt))
			match = true;		/* let the reference say what is wrong */
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


/* Start screening a document of about len_hint bytes. */
void
tv_fast_screen_begin(FastScreen *fs, ScreenRules *rules, int len_hint)
{
	fs->rules = rules;
	fs->hit = false;
	initStringInfo(&fs->joined);
	enlargeStringInfo(&fs->joined, len_hint);
}

/* Screen a parsed document (the tree path). */
void
tv_fast_screen_tree(FastScreen *fs, xmlNodePtr root)
{
	fast_screen_nodes(fs, root);
}

/* After the last name and value: the patterns run over the joined values. */
void
tv_fast_screen_end(FastScreen *fs)
{
	fast_screen_joined(fs);
}
