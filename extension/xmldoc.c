/*-------------------------------------------------------------------------
 *
 * xmldoc.c
 *		Parsing metadata and schemas safely, with libxml2.
 *
 * PostgreSQL's xml type parses and runs XPath but cannot validate against a
 * schema or canonicalize, so trialvault parses the metadata again with
 * libxml2, always through tv_xml_parse() or under the same rules, inside
 * PostgreSQL's own error context (pg_xml_init): libxml2's messages become
 * ereport()s and never reach stderr, and its external entity loader refuses
 * every external entity.  On top of that a document or schema with a
 * DOCTYPE is refused outright (metadata needs no DTD, and it is where entity
 * bombs and external entities live), nothing is loaded from the network,
 * documents larger than trialvault.max_metadata_size are refused before
 * parsing, namespace URIs must be absolute (the canonical form is defined
 * only for those), and every XPath evaluation has a budget of steps.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/uri.h>
#include <libxml/xpath.h>

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/xml.h"

#include "xmlmeta.h"

/* Settings (tv_xmldoc_init) */
int			tv_max_metadata_size = 1024 * 1024;
int			tv_xpath_max_steps = 20000000;

void
tv_xml_collect_error(void *arg, xmlErrorPtr err)
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
void
tv_xml_ignore_error(void *arg, xmlErrorPtr err)
{
}

void
tv_xml_errlist_init(XmlErrList *el, int max)
{
	el->nerrors = 0;
	el->maxerrors = max;
	el->lines = palloc(sizeof(int) * max);
	el->cols = palloc(sizeof(int) * max);
	el->messages = palloc(sizeof(char *) * max);
}

void
tv_xml_check_size(const char *what, int len)
{
	if (len > tv_max_metadata_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too large: %d bytes", what, len),
				 errdetail("trialvault.max_metadata_size is %d bytes.", tv_max_metadata_size),
				 errhint("Keep large content in the document itself; metadata describes it.")));
}

/* Metadata and schemas never have a DTD: where entity bombs and file reads live. */
void
tv_xml_refuse_doctype(const char *what)
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
void
tv_xpath_budget(xmlXPathContextPtr xpc)
{
	xpc->opLimit = (unsigned long) tv_xpath_max_steps;
	xpc->opCount = 0;
}

/* After an evaluation: a pending cancel first, then the budget. */
void
tv_xpath_check_budget(xmlXPathContextPtr xpc)
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
bool
tv_xml_namespace_absolute(const xmlChar *href)
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

void
tv_xml_refuse_relative_namespaces(xmlNodePtr node)
{
	for (; node != NULL; node = node->next)
	{
		xmlNsPtr	ns;

		if (node->type != XML_ELEMENT_NODE)
			continue;
		for (ns = node->nsDef; ns != NULL; ns = ns->next)
		{
			if (!tv_xml_namespace_absolute(ns->href))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_XML_DOCUMENT),
						 errmsg("metadata declares a relative namespace URI on element <%s>",
								(const char *) node->name),
						 errdetail("The canonical form of metadata (Exclusive XML Canonicalization), which is hashed and signed, is defined only for absolute namespace URIs."),
						 errhint("Use an absolute URI, with a scheme, such as urn:example:visit or https://example.org/visit.")));
		}
		tv_xml_refuse_relative_namespaces(node->children);
	}
}

/*
 * Parse an xml datum into a libxml2 document.  Must be called inside
 * pg_xml_init()/pg_xml_done(); the caller frees the document.
 */
xmlDocPtr
tv_xml_parse(PgXmlErrorContext *xcxt, xmltype *x, const char *what)
{
	int			len = VARSIZE_ANY_EXHDR(x);
	xmlDocPtr	doc;

	tv_xml_check_size(what, len);
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
		tv_xml_refuse_doctype(what);
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

bool
tv_xml_is_blank(const xmlChar *s)
{
	if (s == NULL)
		return true;
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			return false;
	return true;
}

void
tv_xmldoc_init(void)
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
