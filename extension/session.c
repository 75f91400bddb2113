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
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "trialvault.h"

static char *tv_opened_study = NULL;

/* Kept plans, prepared on first use. */
static SPIPlanPtr member_plan = NULL;
static SPIPlanPtr scope_plan = NULL;

/*
 * The open study if the current user may use it now, else NULL.  The caller
 * runs as the owner, connected to SPI.
 */
static bool
tv_still_member(const char *study, const char *requester)
{
	Oid			types[2] = {TEXTOID, NAMEOID};
	Datum		values[2];
	NameData	name;
	bool		isnull;
	SPIPlanPtr	plan;

	plan = tv_kept_plan(&member_plan,
						"SELECT EXISTS (SELECT 1 FROM trialvault._current_roles($1, $2))",
						2, types);
	values[0] = CStringGetTextDatum(study);
	values[1] = tv_name_datum(&name, requester);
	return DatumGetBool(tv_spi_value(plan, values, NULL, true, BOOLOID, &isnull));
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
	bool		ok;
	char	   *requester;

	if (tv_opened_study == NULL)
		PG_RETURN_NULL();
	requester = GetUserNameFromId(GetUserId(), false);
	tv_owner_spi_begin(&as);
	ok = tv_still_member(tv_opened_study, requester);
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

PG_FUNCTION_INFO_V1(tv_session_scope);

/*
 * trialvault._session_scope(what): for the current user in the open study,
 * the list trialvault._scope() computes (sites whose documents they may
 * list, roles they hold, ...); empty when no study is open or they are no
 * longer a member.  What the secured views filter by.
 */
Datum
tv_session_scope(PG_FUNCTION_ARGS)
{
	TvAsOwner	as;
	char	   *requester;
	NameData	name;
	Oid			types[3] = {NAMEOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	Datum		result;
	bool		isnull = true;
	SPIPlanPtr	plan;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("scope must not be NULL")));
	if (tv_opened_study == NULL)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(TEXTOID));

	requester = GetUserNameFromId(GetUserId(), false);
	values[0] = tv_name_datum(&name, requester);
	values[1] = CStringGetTextDatum(tv_opened_study);
	values[2] = PG_GETARG_DATUM(0);

	tv_owner_spi_begin(&as);
	plan = tv_kept_plan(&scope_plan, "SELECT trialvault._scope($1, $2, $3)", 3, types);
	result = tv_spi_value(plan, values, nulls, true, TEXTARRAYOID, &isnull);
	tv_owner_spi_end(&as);
	if (isnull)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(TEXTOID));
	return result;
}
