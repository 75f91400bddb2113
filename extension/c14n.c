/*-------------------------------------------------------------------------
 *
 * c14n.c
 *		The canonical form of metadata, which is hashed and signed: standard
 *		Exclusive XML Canonicalization 1.0 without comments, unmodified, so
 *		that any other implementation (an inspector's xmlsec, a signature
 *		verifier) computes the same bytes.
 *
 * Attribute order, quote style, whitespace inside tags, redundant or unused
 * namespace declarations, the XML declaration and comments do not change
 * the bytes; text (including whitespace between elements), names, prefixes
 * and namespace URIs do.
 *
 * libxml2's xmlC14NDocDumpMemory() on the parsed tree is the definition
 * (metadata_c14n(), metadata_sha256()).  Document loading does not build a
 * tree when it need not: inspect.c parses with SAX callbacks and has the
 * streaming writer below render the canonical form as the events arrive,
 * which halves the cost of checking metadata (bench/xml_bench.sh).  The
 * writer must produce exactly libxml2's bytes, and gives up (the tree path
 * runs instead) on whatever it does not render: processing instructions,
 * namespace URIs with quotes or markup characters, the xml prefix on an
 * element, attributes defaulted from a DTD.  It renders elements as start
 * and end tags, attributes sorted by namespace URI (none first) and local
 * name, a namespace declaration exactly where an element or one of its
 * attributes uses a prefix whose binding no output ancestor rendered (the
 * default namespace counts as rendered empty at the top), declarations
 * sorted by prefix, text and attribute values escaped as C14N says, and
 * drops comments.  test/integration/83_c14n_differential.sh compares the
 * two on thousands of generated documents.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libxml/c14n.h>
#include <libxml/tree.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/xml.h"

#include "xmlmeta.h"

/*
 * libxml2's exclusive C14N of a parsed document, into *out (xmlFree it);
 * returns its length.  Relative namespace URIs are refused first, with a
 * message that says so (libxml2 would only fail).
 */
int
tv_c14n_tree(PgXmlErrorContext *xcxt, xmlDocPtr doc, xmlChar **out)
{
	int			len;

	tv_xml_refuse_relative_namespaces(xmlDocGetRootElement(doc));
	len = xmlC14NDocDumpMemory(doc, NULL, XML_C14N_EXCLUSIVE_1_0, NULL, 0, out);
	if (len < 0 || *out == NULL)
		xml_ereport(xcxt, ERROR, ERRCODE_INVALID_XML_DOCUMENT,
					"could not canonicalize metadata");
	return len;
}

/* The canonical bytes of a metadata document, as a palloc'd bytea. */
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

		doc = tv_xml_parse(xcxt, x, "metadata");
		len = tv_c14n_tree(xcxt, doc, (xmlChar **) &out);
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
void
tv_c14n_sha256(xmltype *x, uint8 *hash)
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

	tv_c14n_sha256(PG_GETARG_XML_P(0), hash);
	PG_RETURN_BYTEA_P(tv_hash_bytea(hash));
}

/* ---------------------------------------------------------------------
 * The streaming writer
 * ---------------------------------------------------------------------
 */

void
tv_c14n_stream_begin(C14nStream *cs, int len_hint)
{
	memset(cs, 0, sizeof(*cs));
	initStringInfo(&cs->out);
	/* The canonical form is about as long as the text: grow once, not often. */
	enlargeStringInfo(&cs->out, len_hint + len_hint / 4);
	cs->maxns = 8;
	cs->ns = palloc(sizeof(NsRendered) * cs->maxns);
}

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
rendered_href(C14nStream *cs, const char *prefix)
{
	int			i;

	for (i = cs->nns - 1; i >= 0; i--)
	{
		const char *p = cs->ns[i].prefix;

		if ((p == NULL && prefix == NULL) ||
			(p != NULL && prefix != NULL && strcmp(p, prefix) == 0))
			return cs->ns[i].href;
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
need_ns(C14nStream *cs, const char *prefix, const char *href)
{
	const char *have = rendered_href(cs, prefix);

	if (have != NULL && strcmp(have, href) == 0)
		return;
	if (!plain_href(href))
	{
		cs->gave_up = true;
		return;
	}
	if (cs->nns == cs->maxns)
	{
		cs->maxns *= 2;
		cs->ns = repalloc(cs->ns, sizeof(NsRendered) * cs->maxns);
	}
	cs->ns[cs->nns].prefix = prefix ? pstrdup(prefix) : NULL;
	cs->ns[cs->nns].href = pstrdup(href);
	cs->ns[cs->nns].depth = cs->depth;
	cs->nns++;
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

void
tv_c14n_stream_start(C14nStream *cs, const xmlChar *localname, const xmlChar *prefix,
					 const xmlChar *URI, int nb_namespaces, const xmlChar **namespaces,
					 int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
	StreamAttr *attrs;
	int			first_new;
	int			i;

	cs->depth++;
	if (cs->gave_up)
		return;
	if (nb_defaulted > 0 ||
		(prefix && strcmp((const char *) prefix, "xml") == 0))
	{
		cs->gave_up = true;
		return;
	}
	/* A relative namespace URI: the tree path refuses it, with its reason. */
	for (i = 0; i < nb_namespaces; i++)
	{
		if (!tv_xml_namespace_absolute(namespaces[2 * i + 1]))
		{
			cs->gave_up = true;
			return;
		}
	}
	if (nb_attributes > cs->maxattrs)
	{
		cs->maxattrs = Max(nb_attributes, 2 * cs->maxattrs);
		cs->attrs = cs->attrs ? repalloc(cs->attrs, sizeof(StreamAttr) * cs->maxattrs) :
			palloc(sizeof(StreamAttr) * cs->maxattrs);
	}
	attrs = cs->attrs;
	for (i = 0; i < nb_attributes; i++)
	{
		const xmlChar **a = attributes + 5 * i;

		attrs[i].local = (const char *) a[0];
		attrs[i].prefix = (const char *) a[1];
		attrs[i].uri = (const char *) a[2];
		attrs[i].value = (const char *) a[3];
		attrs[i].len = a[4] - a[3];
	}

	first_new = cs->nns;
	need_ns(cs, (const char *) prefix, URI ? (const char *) URI : "");
	for (i = 0; i < nb_attributes; i++)
		if (attrs[i].prefix && strcmp(attrs[i].prefix, "xml") != 0)
			need_ns(cs, attrs[i].prefix, attrs[i].uri);
	if (cs->gave_up)
		return;

	put_char(&cs->out, '<');
	append_qname(&cs->out, (const char *) prefix, (const char *) localname);
	sort_ns(cs->ns + first_new, cs->nns - first_new);
	for (i = first_new; i < cs->nns; i++)
	{
		if (cs->ns[i].prefix)
		{
			PUT_LITERAL(&cs->out, " xmlns:");
			put_bytes(&cs->out, cs->ns[i].prefix, strlen(cs->ns[i].prefix));
			PUT_LITERAL(&cs->out, "=\"");
		}
		else
			PUT_LITERAL(&cs->out, " xmlns=\"");
		put_bytes(&cs->out, cs->ns[i].href, strlen(cs->ns[i].href));
		put_char(&cs->out, '"');
	}
	sort_attrs(attrs, nb_attributes);
	for (i = 0; i < nb_attributes; i++)
	{
		put_char(&cs->out, ' ');
		append_qname(&cs->out, attrs[i].prefix, attrs[i].local);
		PUT_LITERAL(&cs->out, "=\"");
		c14n_escape(&cs->out, attrs[i].value, attrs[i].len, true);
		put_char(&cs->out, '"');
	}
	put_char(&cs->out, '>');
}

void
tv_c14n_stream_end(C14nStream *cs, const xmlChar *localname, const xmlChar *prefix)
{
	if (!cs->gave_up)
	{
		PUT_LITERAL(&cs->out, "</");
		append_qname(&cs->out, (const char *) prefix, (const char *) localname);
		put_char(&cs->out, '>');
	}
	while (cs->nns > 0 && cs->ns[cs->nns - 1].depth == cs->depth)
		cs->nns--;
	cs->depth--;
}

/* Character data inside the root element (text or CDATA: C14N renders both as text). */
void
tv_c14n_stream_text(C14nStream *cs, const xmlChar *ch, int len)
{
	if (!cs->gave_up && cs->depth > 0)
		c14n_escape(&cs->out, (const char *) ch, len, false);
}
