/*-------------------------------------------------------------------------
 *
 * xmlmeta.h
 *		What the XML metadata files share, and nothing else includes:
 *
 *	xmldoc.c		parsing metadata and schemas safely (size, DOCTYPE,
 *					relative namespaces, XPath budget), libxml2's errors
 *	xmlschema.c		compiling XSDs (cached per backend) and validating
 *	xmlscreen.c		PHI screening rules: the reference walk behind
 *					screen_metadata(), and the fast screen inspection uses
 *	c14n.c			the canonical form: libxml2's exclusive C14N (the
 *					reference) and the streaming writer inspection uses
 *	xmlextract.c	meta_text(), meta_int(), meta_date()
 *	inspect.c		inspect_metadata(): screening, validation and C14N from
 *					one parse, with the study's rules cached per backend
 *
 *-------------------------------------------------------------------------
 */
#ifndef TV_XMLMETA_H
#define TV_XMLMETA_H

#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <libxml/xpath.h>

#include "lib/stringinfo.h"
#include "utils/xml.h"

#include "trialvault.h"

/* ---------------------------------------------------------------------
 * xmldoc.c
 * ---------------------------------------------------------------------
 */
extern int	tv_xpath_max_steps;

/* Errors collected from libxml2 while validating or compiling a schema. */
typedef struct XmlErrList
{
	int			nerrors;
	int			maxerrors;
	int		   *lines;
	int		   *cols;
	char	  **messages;
} XmlErrList;

extern void tv_xml_errlist_init(XmlErrList *el, int max);
extern void tv_xml_collect_error(void *arg, xmlErrorPtr err);
extern void tv_xml_ignore_error(void *arg, xmlErrorPtr err);
extern void tv_xml_check_size(const char *what, int len);
extern void tv_xml_refuse_doctype(const char *what);
extern bool tv_xml_namespace_absolute(const xmlChar *href);
extern void tv_xml_refuse_relative_namespaces(xmlNodePtr node);
extern xmlDocPtr tv_xml_parse(PgXmlErrorContext *xcxt, xmltype *x, const char *what);
extern bool tv_xml_is_blank(const xmlChar *s);
extern void tv_xpath_budget(xmlXPathContextPtr xpc);
extern void tv_xpath_check_budget(xmlXPathContextPtr xpc);

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

/* ---------------------------------------------------------------------
 * xmlschema.c
 * ---------------------------------------------------------------------
 */
extern xmlSchemaPtr tv_xml_cached_schema(PgXmlErrorContext *xcxt, xmltype *xsd,
										 const uint8 *known_hash);

/* ---------------------------------------------------------------------
 * xmlscreen.c
 * ---------------------------------------------------------------------
 */
typedef struct ScreenRule
{
	text	   *rule_name;
	char		kind;			/* 'e'lement, 'a'ttribute, 'n'ame, 'p'attern */
	char	   *lowered;		/* name rules: the name, lowercased */
	char	   *ascii;			/* the same by ASCII folding, if it is ASCII */
	uint32		ascii_hash;		/* its hash in ScreenRules.names */
	text	   *pattern;		/* pattern rules */
	bool		joinable;		/* may run once over all values */
	bool		in_combined;	/* part of ScreenRules.combined */
} ScreenRule;

/* An ASCII name rule in the open-addressing table of a ScreenRules. */
typedef struct NameSlot
{
	const char *name;			/* ASCII-lowered; NULL: empty slot */
	uint32		hash;
	int			kinds;			/* NAME_ELEMENT | NAME_ATTRIBUTE */
} NameSlot;

/* A study's PHI screening rules, compiled for screening. */
typedef struct ScreenRules
{
	int			nrules;
	ScreenRule *rules;			/* name and pattern rules */
	int			maxrules;
	NameSlot   *names;			/* ASCII name rules; nameslots a power of 2 */
	int			nameslots;
	bool		nonascii_names; /* some name rule is not plain ASCII */
	bool		any_names;
	text	   *combined;		/* joinable patterns as one alternation */
	ScreenRule **patterns;		/* the pattern rules */
	int			npatterns;
	bool		any_joinable;
	bool		all_joinable;
	int			nxpaths;
	char	  **xpaths;			/* XPath rules: the tree path evaluates them */
} ScreenRules;

extern void tv_screen_rules_init(ScreenRules *rs, int maxrules);
extern void tv_screen_rules_add(ScreenRules *rs, text *name, const char *kind,
								const char *expr);
extern void tv_screen_rules_finish(ScreenRules *rs);

/* The fast screen: does any rule possibly match?  A no must be certain. */
typedef struct FastScreen
{
	ScreenRules *rules;
	bool		hit;
	StringInfoData joined;		/* newline-free values, one per line */
} FastScreen;

extern void tv_fast_screen_begin(FastScreen *fs, ScreenRules *rules, int len_hint);
extern void tv_fast_screen_name(FastScreen *fs, const char *kind, const xmlChar *name);
extern void tv_fast_screen_value_len(FastScreen *fs, const char *v, int len);
extern void tv_fast_screen_tree(FastScreen *fs, xmlNodePtr root);
extern void tv_fast_screen_end(FastScreen *fs);
extern bool tv_xpath_rule_matches(PgXmlErrorContext *xcxt, xmlDocPtr doc,
								  const char *expr);

/* ---------------------------------------------------------------------
 * c14n.c
 * ---------------------------------------------------------------------
 */
extern int	tv_c14n_tree(PgXmlErrorContext *xcxt, xmlDocPtr doc, xmlChar **out);
extern void tv_c14n_sha256(xmltype *x, uint8 *hash);

/* A binding the streaming writer has rendered on an open element. */
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

/* The streaming writer: the canonical form, written as SAX events arrive. */
typedef struct C14nStream
{
	StringInfoData out;			/* the canonical form so far */
	int			depth;			/* of the open element; 0 outside the root */
	NsRendered *ns;
	int			nns;
	int			maxns;
	StreamAttr *attrs;			/* room for one element's attributes */
	int			maxattrs;
	bool		gave_up;		/* cannot render this document: use the tree */
} C14nStream;

extern void tv_c14n_stream_begin(C14nStream *cs, int len_hint);
extern void tv_c14n_stream_start(C14nStream *cs, const xmlChar *localname,
								 const xmlChar *prefix, const xmlChar *URI,
								 int nb_namespaces, const xmlChar **namespaces,
								 int nb_attributes, int nb_defaulted,
								 const xmlChar **attributes);
extern void tv_c14n_stream_end(C14nStream *cs, const xmlChar *localname,
							   const xmlChar *prefix);
extern void tv_c14n_stream_text(C14nStream *cs, const xmlChar *ch, int len);

#endif							/* TV_XMLMETA_H */
