/*-------------------------------------------------------------------------
 *
 * session.c
 *		The session's open study, and what the current user may see in it:
 *		the state the secured views filter by.
 *
 * The open study is backend-local state that only trialvault.open_study()
 * sets; it is not a GUC, so SET, set_config() and RESET cannot touch it.
 * Every use checks again that the current user (current_user, so SET ROLE
 * counts) holds a role in the study right now: revoking a membership takes
 * effect on the next statement.  The checks run as the extension's owner
 * through plans kept for the life of the backend, because the views call
 * them on every query.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "trialvault.h"

static char *tv_opened_study = NULL;

/*
 * The standing of the caller (as->save_userid) in the open study; NULL when
 * no study is open.  The caller has run tv_owner_spi_begin(as).
 */
static TvStanding *
session_standing(TvAsOwner *as)
{
	if (tv_opened_study == NULL)
		return NULL;
	return tv_standing(tv_opened_study, GetUserNameFromId(as->save_userid, false));
}

/*
 * tv_session_study_raw: the study open_study() set, unchecked (NULL when
 * none); open_document passes it to its decision, which checks membership.
 */
const char *
tv_session_study_raw(void)
{
	return tv_opened_study;
}

PG_FUNCTION_INFO_V1(tv_open_study);

/*
 * trialvault.open_study(code): the internal _open_study() checks that the
 * caller holds a role in the study (and records the event); then it becomes
 * the session's one open study.
 */
Datum
tv_open_study(PG_FUNCTION_ARGS)
{
	char	   *code;

	(void) tv_call_as_owner(fcinfo);
	code = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (tv_opened_study)
		pfree(tv_opened_study);
	tv_opened_study = MemoryContextStrdup(TopMemoryContext, code);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(tv_close_study);

/* trialvault.close_study() */
Datum
tv_close_study(PG_FUNCTION_ARGS)
{
	if (tv_opened_study)
		pfree(tv_opened_study);
	tv_opened_study = NULL;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(tv_current_study);

/*
 * trialvault.current_study(): the open study, or NULL when none is open or
 * the current user no longer holds a role in it.
 */
Datum
tv_current_study(PG_FUNCTION_ARGS)
{
	TvAsOwner	as;
	TvStanding *s;
	bool		ok;

	if (tv_opened_study == NULL)
		PG_RETURN_NULL();
	tv_owner_spi_begin(&as);
	s = session_standing(&as);
	ok = s != NULL && s->nroles > 0;
	tv_owner_spi_end(&as);
	if (!ok)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(tv_opened_study));
}

PG_FUNCTION_INFO_V1(tv_session_study);

/*
 * trialvault._session_study(): the opened study without the membership
 * check.  Only for the views, which also filter by _session_scope(): that is
 * empty for non-members, and checking once per query is enough.
 */
Datum
tv_session_study(PG_FUNCTION_ARGS)
{
	if (tv_opened_study == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(tv_opened_study));
}

/* A list of C strings as a text[], in CurrentMemoryContext. */
static ArrayType *
text_array(List *values)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(values), 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, values)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	return construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT);
}

PG_FUNCTION_INFO_V1(tv_session_scope);

/*
 * trialvault._session_scope(what): for the current user in the open study,
 * what tv_scope() lists (sites whose documents they may list, sites whose
 * log they may read, roles they hold, sites they monitor now); empty when
 * no study is open or they are no longer a member.  What the secured views
 * filter by.
 */
Datum
tv_session_scope(PG_FUNCTION_ARGS)
{
	TvAsOwner	as;
	char	   *what;
	TvStanding *s;
	List	   *values = NIL;
	ArrayType  *result;
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext old;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("scope must not be NULL")));
	/* The views of older versions ask for scopes that are gone. */
	tv_require_schema();
	if (tv_opened_study == NULL)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(TEXTOID));
	what = text_to_cstring(PG_GETARG_TEXT_PP(0));

	tv_owner_spi_begin(&as);
	s = session_standing(&as);
	if (s)
		values = tv_scope(s, what);
	old = MemoryContextSwitchTo(outer);
	result = text_array(values);
	MemoryContextSwitchTo(old);
	tv_owner_spi_end(&as);
	PG_RETURN_ARRAYTYPE_P(result);
}

/*
 * What _may_open() keeps for the rest of its query: the current user's
 * standing in the open study when the query started, and the sites they
 * monitor, so that each row costs no query.
 */
typedef struct MayOpenCache
{
	TvStanding *standing;		/* NULL: not a member */
	List	   *monitor_sites;
	char	   *requester;
} MayOpenCache;

/* Does a list of C strings hold s? */
static bool
in_list(List *values, const char *s)
{
	ListCell   *lc;

	foreach(lc, values)
		if (strcmp((char *) lfirst(lc), s) == 0)
			return true;
	return false;
}

static const char *
cached_monitor_state(void *arg, const char *site)
{
	return in_list(((MayOpenCache *) arg)->monitor_sites, site) ? "valid" : "none";
}

static MayOpenCache *
may_open_cache(FunctionCallInfo fcinfo)
{
	MayOpenCache *c = (MayOpenCache *) fcinfo->flinfo->fn_extra;
	TvAsOwner	as;
	TvStanding *s;
	MemoryContext old;

	if (c)
		return c;
	tv_owner_spi_begin(&as);
	s = session_standing(&as);
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	c = palloc0(sizeof(MayOpenCache));
	c->requester = GetUserNameFromId(as.save_userid, false);
	if (s && s->nroles > 0)
	{
		List	   *mon = tv_monitor_sites(s);
		ListCell   *lc;

		/* The cache's standing may be replaced meanwhile: a copy. */
		c->standing = tv_standing_copy(s);
		foreach(lc, mon)
			c->monitor_sites = lappend(c->monitor_sites, pstrdup((char *) lfirst(lc)));
	}
	MemoryContextSwitchTo(old);
	tv_owner_spi_end(&as);
	fcinfo->flinfo->fn_extra = c;
	return c;
}

PG_FUNCTION_INFO_V1(tv_may_open);

/*
 * trialvault._may_open(site, doc_type, contains_phi, loaded_by): whether
 * the current user may open a document with these facts in the open study,
 * by the rules open_document follows (emergencies aside).  my_documents
 * shows the fingerprint of a PHI document's plaintext only then: anyone
 * else could confirm a guess at its content by hashing it.
 */
Datum
tv_may_open(PG_FUNCTION_ARGS)
{
	MayOpenCache *c;
	TvDocFacts	d;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_BOOL(false);
	c = may_open_cache(fcinfo);
	if (c->standing == NULL)
		PG_RETURN_BOOL(false);
	d.site = text_to_cstring(PG_GETARG_TEXT_PP(0));
	d.doc_type = text_to_cstring(PG_GETARG_TEXT_PP(1));
	d.contains_phi = PG_GETARG_BOOL(2);
	d.loaded_by = NameStr(*PG_GETARG_NAME(3));
	PG_RETURN_BOOL(tv_reason_grants(tv_open_reason(c->standing, &d, c->requester,
												   cached_monitor_state, c)));
}

PG_FUNCTION_INFO_V1(tv_session_roles);

/*
 * trialvault._session_roles() RETURNS TABLE (site text, study_role text):
 * the current user's roles in the open study (site NULL for study-wide
 * ones); none when no study is open or they are no longer a member.
 */
Datum
tv_session_roles(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TvAsOwner	as;
	TvStanding *s;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	tv_owner_spi_begin(&as);
	s = session_standing(&as);
	for (i = 0; s && i < s->nroles; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		if (s->roles[i].site)
			values[0] = CStringGetTextDatum(s->roles[i].site);
		else
			nulls[0] = true;
		values[1] = CStringGetTextDatum(tv_role_name(s->roles[i].role));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	tv_owner_spi_end(&as);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(tv_session_sites);

/*
 * trialvault._session_sites() RETURNS TABLE (site text, my_roles text[],
 * may_load boolean, may_open text): for each site of the open study whose
 * documents the current user may list, the roles they hold there (or
 * study-wide), whether they may load documents there, and what they may
 * open there in words.
 */
Datum
tv_session_sites(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TvAsOwner	as;
	TvStanding *s;
	List	   *sites;
	List	   *monitored;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	tv_owner_spi_begin(&as);
	s = session_standing(&as);
	if (s)
	{
		sites = tv_scope(s, "documents");
		monitored = tv_monitor_sites(s);
		foreach(lc, sites)
		{
			const char *site = lfirst(lc);
			Datum		values[4];
			bool		nulls[4] = {false, false, false, false};

			values[0] = CStringGetTextDatum(site);
			values[1] = PointerGetDatum(text_array(tv_roles_at(s, site)));
			values[2] = BoolGetDatum(tv_may_load(s, site));
			values[3] = CStringGetTextDatum(tv_site_openings(s, site, in_list(monitored, site)));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	tv_owner_spi_end(&as);
	return (Datum) 0;
}
