/*-------------------------------------------------------------------------
 *
 * accounts.c
 *		The security audit trail, third part: every change to a role, in any
 *		database of the cluster, and passwords kept out of the server log and
 *		pg_stat_statements.
 *
 * CREATE/ALTER/DROP ROLE (USER, GROUP), ALTER ROLE ... SET, GRANT/REVOKE of
 * role membership and ALTER ROLE ... RENAME are recorded with the session
 * user and the current user, the role changed, and what changed: for a
 * password only that it changed, never the text or the verifier.  The
 * records are audit events (trialvault.audit_events of the database named
 * by trialvault.database, through the log writer), made durable when the
 * transaction commits, before it does: a change commits only once it is on
 * record.  When it cannot be, an ordinary role's transaction fails; a
 * superuser's commits, with a server log line under the fixed prefix
 * "trialvault account change fallback:" and the record kept for the
 * writer's return.  A role statement that fails (permission denied, a role
 * that exists already...) is recorded too, as account_change_refused.
 *
 * Passwords: PostgreSQL writes the text of a statement to the server log
 * (log_statement, log_min_error_statement), to pg_stat_statements and to
 * pg_stat_activity.  The string literal after PASSWORD in a top-level role
 * statement is overwritten with asterisks where PostgreSQL keeps the text
 * (so every later reader sees it redacted), and in every server log
 * message that was composed before (the log_statement line) through
 * emit_log_hook.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "commands/dbcommands.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "catalog/pg_authid.h"
#include "executor/spi.h"
#include "utils/syscache.h"

#include "trialvault.h"

static ProcessUtility_hook_type prev_utility_hook = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;

/* Records of this transaction's role changes, made durable at its commit. */
typedef struct TvPendingChange
{
	SubTransactionId subid;
	TvLogRecord rec;
} TvPendingChange;

static List *tv_pending = NIL;

/* ---------------------------------------------------------------------
 * Redaction
 * ---------------------------------------------------------------------
 */

static bool
tv_ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_' || c == '$' || (unsigned char) c >= 0x80;
}

/* Skip white space and comments from p; never past the end. */
static char *
tv_skip_space(char *p)
{
	for (;;)
	{
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f')
			p++;
		if (p[0] == '-' && p[1] == '-')
		{
			while (*p && *p != '\n')
				p++;
		}
		else if (p[0] == '/' && p[1] == '*')
		{
			p += 2;
			while (*p && !(p[0] == '*' && p[1] == '/'))
				p++;
			if (*p)
				p += 2;
		}
		else
			return p;
	}
}

/*
 * The end of the string literal at p ('...', E'...', U&'...', $tag$...$tag$),
 * or NULL when p starts none.  An unterminated one ends with the text.
 */
static char *
tv_literal_end(char *p)
{
	bool		backslash = false;

	if (*p == 'E' || *p == 'e')
	{
		backslash = true;
		p++;
	}
	else if ((*p == 'U' || *p == 'u') && p[1] == '&')
		p += 2;
	if (*p == '\'')
	{
		for (p++; *p; p++)
		{
			if (backslash && *p == '\\' && p[1])
				p++;
			else if (*p == '\'')
			{
				if (p[1] == '\'')
					p++;
				else
					return p + 1;
			}
		}
		return p;
	}
	if (*p == '$')
	{
		char	   *tag_end = p + 1;
		size_t		taglen;
		char	   *q;

		while (*tag_end && *tag_end != '$' && tv_ident_char(*tag_end))
			tag_end++;
		if (*tag_end != '$')
			return NULL;
		taglen = tag_end - p + 1;
		for (q = tag_end + 1; *q; q++)
			if (strncmp(q, p, taglen) == 0)
				return q + taglen;
		return q;
	}
	return NULL;
}

/*
 * tv_redact_passwords: overwrite, in place, every string literal that
 * follows the word PASSWORD (any case, comments allowed in between) with
 * asterisks between quotes, keeping the length (pg_stat_statements and the
 * parser's locations index into the text).  Never raises an error: it runs
 * while messages are being reported.  True when something was redacted.
 */
bool
tv_redact_passwords(char *sql)
{
	char	   *p;
	bool		any = false;

	if (sql == NULL)
		return false;
	for (p = sql; *p; p++)
	{
		char	   *lit;
		char	   *end;
		char	   *q;

		if ((*p != 'p' && *p != 'P') || pg_strncasecmp(p, "password", 8) != 0 ||
			(p > sql && tv_ident_char(p[-1])) || tv_ident_char(p[8]))
			continue;
		lit = tv_skip_space(p + 8);
		end = tv_literal_end(lit);
		if (end == NULL)
			continue;
		for (q = lit; q < end; q++)
			*q = '*';
		*lit = '\'';
		if (end - lit >= 2 && end[-1] != '\0')
			end[-1] = '\'';
		any = true;
		p = end - 1;
	}
	return any;
}

/* Whether a role statement's options set or remove a password. */
static bool
tv_options_have_password(List *options)
{
	ListCell   *lc;

	foreach(lc, options)
		if (strcmp(((DefElem *) lfirst(lc))->defname, "password") == 0)
			return true;
	return false;
}

/* Whether a CREATE or ALTER ROLE sets a password (not PASSWORD NULL). */
static bool
tv_sets_password(Node *stmt)
{
	List	   *options;
	ListCell   *lc;

	if (IsA(stmt, CreateRoleStmt))
		options = ((CreateRoleStmt *) stmt)->options;
	else if (IsA(stmt, AlterRoleStmt))
		options = ((AlterRoleStmt *) stmt)->options;
	else
		return false;
	foreach(lc, options)
	{
		DefElem    *d = lfirst(lc);

		if (strcmp(d->defname, "password") == 0 && d->arg != NULL)
			return true;
	}
	return false;
}

/*
 * Aging: a password set here expires trialvault.password_max_age days from
 * now.  Without a VALID UNTIL, or with a later one (or 'infinity'), the role
 * gets that one, brought down with a NOTICE.  It is set afterwards, as the
 * bootstrap superuser: a role may change its own password but not its own
 * VALID UNTIL, and must still be able to change its password.
 */
static void
tv_age_password(const char *rolename)
{
	TimestampTz limit = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													(int64) tv_password_max_age * 86400 * 1000);
	Oid			roleid;
	HeapTuple	tup;
	bool		isnull;
	TimestampTz until = 0;
	Oid			save_userid;
	int			save_sec;

	CommandCounterIncrement();
	roleid = get_role_oid(rolename, false);
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for role %u", roleid);
	until = DatumGetTimestampTz(SysCacheGetAttr(AUTHOID, tup, Anum_pg_authid_rolvaliduntil, &isnull));
	ReleaseSysCache(tup);
	if (!isnull && until <= limit)
		return;
	if (!isnull)
		ereport(NOTICE,
				(errmsg("VALID UNTIL brought down to %s", timestamptz_to_str(limit)),
				 errdetail("A password set here is valid for %d days at most (trialvault.password_max_age).",
						   tv_password_max_age)));

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	SPI_connect();
	if (SPI_execute(psprintf("ALTER ROLE %s VALID UNTIL %s", quote_identifier(rolename),
							 quote_literal_cstr(timestamptz_to_str(limit))), false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not set VALID UNTIL of role \"%s\"", rolename);
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);
}

/* ---------------------------------------------------------------------
 * What changed
 * ---------------------------------------------------------------------
 */

static const char *
tv_rolespec_name(RoleSpec *r)
{
	if (r == NULL)
		return "(all roles)";
	switch (r->roletype)
	{
		case ROLESPEC_CSTRING:
			return r->rolename;
		case ROLESPEC_CURRENT_ROLE:
		case ROLESPEC_CURRENT_USER:
			return GetUserNameFromId(GetUserId(), false);
		case ROLESPEC_SESSION_USER:
			return GetUserNameFromId(GetSessionUserId(), false);
		case ROLESPEC_PUBLIC:
			return "public";
	}
	return "?";
}

static void
tv_append_roles(StringInfo buf, List *roles)
{
	ListCell   *lc;

	foreach(lc, roles)
	{
		Node	   *n = lfirst(lc);

		if (lc != list_head(roles))
			appendStringInfoString(buf, " ");
		if (IsA(n, RoleSpec))
			appendStringInfoString(buf, tv_rolespec_name((RoleSpec *) n));
		else if (IsA(n, AccessPriv))
			appendStringInfoString(buf, ((AccessPriv *) n)->priv_name);
	}
}

/* The attributes a CREATE or ALTER ROLE sets, in words; never a password. */
static char *
tv_describe_options(List *options, int action)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, options)
	{
		DefElem    *d = lfirst(lc);
		const char *name = d->defname;

		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		if (strcmp(name, "password") == 0)
			appendStringInfoString(&buf, d->arg ? "password changed" : "password removed");
		else if (strcmp(name, "validUntil") == 0)
			appendStringInfo(&buf, "valid until %s", strVal(d->arg));
		else if (strcmp(name, "connectionlimit") == 0)
			appendStringInfo(&buf, "connection limit %d", intVal(d->arg));
		else if (strcmp(name, "addroleto") == 0)
		{
			appendStringInfoString(&buf, "in role ");
			tv_append_roles(&buf, (List *) d->arg);
		}
		else if (strcmp(name, "rolemembers") == 0)
		{
			appendStringInfoString(&buf, action < 0 ? "members removed: " : "members: ");
			tv_append_roles(&buf, (List *) d->arg);
		}
		else if (strcmp(name, "adminmembers") == 0)
		{
			appendStringInfoString(&buf, "admin members: ");
			tv_append_roles(&buf, (List *) d->arg);
		}
		else if (d->arg && IsA(d->arg, Boolean))
			appendStringInfo(&buf, "%s%s", boolVal(d->arg) ? "" : "no",
							 strcmp(name, "canlogin") == 0 ? "login" :
							 strcmp(name, "isreplication") == 0 ? "replication" : name);
		else
			appendStringInfoString(&buf, name);
	}
	return buf.data;
}

/* This database's name, looked up once (it does not change). */
static const char *
tv_this_database(void)
{
	static char *name = NULL;

	if (name == NULL)
		name = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	return name;
}

static void
tv_change_json(StringInfo buf, const char *target, const char *changes)
{
	resetStringInfo(buf);
	appendStringInfoString(buf, "{\"target\": ");
	escape_json(buf, target);
	appendStringInfoString(buf, ", \"database\": ");
	escape_json(buf, tv_this_database());
	appendStringInfoString(buf, ", \"changes\": ");
	escape_json(buf, changes ? changes : "");
	appendStringInfoChar(buf, '}');
}

/* The detail of a role change record: a JSON object that always fits. */
static void
tv_change_detail(TvLogRecord *rec, const char *target, const char *changes)
{
	StringInfoData buf;

	initStringInfo(&buf);
	tv_change_json(&buf, target, changes);
	if (buf.len >= TV_LOG_DETAIL)
		tv_change_json(&buf, target, "(too long to record)");
	strlcpy(rec->detail, buf.data, sizeof(rec->detail));
	pfree(buf.data);
}

/*
 * A record of a role change: event, the role changed, what changed; the
 * actors (session and current user) come from the context.
 */
static void
tv_change_record(TvLogRecord *rec, const char *event, const char *target,
				 const char *changes)
{
	memset(rec, 0, sizeof(*rec));
	tv_log_context(rec);
	rec->kind = TV_LOG_SECURITY;
	strlcpy(rec->reason, event, sizeof(rec->reason));
	tv_change_detail(rec, target, changes);
}

static TvPendingChange *
tv_pending_new(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	TvPendingChange *c = palloc(sizeof(TvPendingChange));

	c->subid = GetCurrentSubTransactionId();
	tv_pending = lappend(tv_pending, c);
	MemoryContextSwitchTo(old);
	return c;
}

static void
tv_pending_add(const char *event, const char *target, const char *changes)
{
	tv_change_record(&tv_pending_new()->rec, event, target, changes);
}

/*
 * tv_account_change_pending: a record made durable with this transaction's
 * role changes, when it commits (a password history entry, auth.c).
 */
void
tv_account_change_pending(const TvLogRecord *rec)
{
	tv_pending_new()->rec = *rec;
}

/* The records a role statement that succeeded makes. */
static void
tv_note_change(Node *stmt)
{
	ListCell   *lc;
	ListCell   *lg;

	switch (nodeTag(stmt))
	{
		case T_CreateRoleStmt:
			{
				CreateRoleStmt *s = (CreateRoleStmt *) stmt;

				char	   *what = tv_describe_options(s->options, 1);
				ListCell   *lo;
				bool		login = false;

				/* CREATE USER logs in unless told otherwise. */
				foreach(lo, s->options)
					if (strcmp(((DefElem *) lfirst(lo))->defname, "canlogin") == 0)
						login = true;
				if (s->stmt_type == ROLESTMT_USER && !login)
					what = psprintf("login%s%s", what[0] ? ", " : "", what);
				tv_pending_add("role_created", s->role, what);
				break;
			}
		case T_AlterRoleStmt:
			{
				AlterRoleStmt *s = (AlterRoleStmt *) stmt;

				tv_pending_add("role_altered", tv_rolespec_name(s->role),
							   tv_describe_options(s->options, s->action));
				break;
			}
		case T_AlterRoleSetStmt:
			{
				AlterRoleSetStmt *s = (AlterRoleSetStmt *) stmt;
				VariableSetStmt *v = s->setstmt;
				char	   *what;

				if (v->kind == VAR_RESET_ALL)
					what = pstrdup("reset all settings");
				else if (v->kind == VAR_RESET)
					what = psprintf("reset %s", v->name);
				else
					what = psprintf("set %s", v->name);
				if (s->database)
					what = psprintf("%s in database %s", what, s->database);
				tv_pending_add("role_setting_changed", tv_rolespec_name(s->role), what);
				break;
			}
		case T_DropRoleStmt:
			foreach(lc, ((DropRoleStmt *) stmt)->roles)
				tv_pending_add("role_dropped", tv_rolespec_name(lfirst(lc)), NULL);
			break;
		case T_GrantRoleStmt:
			{
				GrantRoleStmt *s = (GrantRoleStmt *) stmt;

				foreach(lg, s->grantee_roles)
					foreach(lc, s->granted_roles)
						tv_pending_add(s->is_grant ? "membership_granted" : "membership_revoked",
									   tv_rolespec_name(lfirst(lg)),
									   psprintf("%s %s%s", s->is_grant ? "member of" : "no longer member of",
												((AccessPriv *) lfirst(lc))->priv_name,
												s->admin_opt ? (s->is_grant ? " with admin option" : " (admin option only)") : ""));
				break;
			}
		case T_RenameStmt:
			{
				RenameStmt *s = (RenameStmt *) stmt;

				tv_pending_add("role_renamed", s->subname, psprintf("renamed to %s", s->newname));
				break;
			}
		case T_AlterSystemStmt:
			{
				VariableSetStmt *v = ((AlterSystemStmt *) stmt)->setstmt;
				char	   *value = v->kind == VAR_SET_VALUE ? ExtractSetVariableArgs(v) : NULL;

				/*
				 * A *_command, and a connection string, which may hold a
				 * password, are for superusers' eyes only
				 * (GUC_SUPERUSER_ONLY); the trail, which administrators
				 * read, does not keep them.
				 */
				if (value && v->name && strstr(v->name, "_command") != NULL)
					value = "(a command, not recorded)";
				else if (value && v->name && strstr(v->name, "_conninfo") != NULL)
					value = "(a connection string, not recorded)";
				tv_pending_add("setting_changed", "",
							   v->name == NULL ? "ALTER SYSTEM RESET ALL" :
							   value ? psprintf("ALTER SYSTEM SET %s = %s (takes effect on reload or restart)", v->name, value) :
							   psprintf("ALTER SYSTEM RESET %s (takes effect on reload or restart)", v->name));
				break;
			}
		default:
			break;
	}
}

static bool
tv_is_role_stmt(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_CreateRoleStmt:
		case T_AlterRoleStmt:
		case T_AlterRoleSetStmt:
		case T_DropRoleStmt:
		case T_GrantRoleStmt:
			return true;
		case T_RenameStmt:
			return ((RenameStmt *) stmt)->renameType == OBJECT_ROLE;
		case T_AlterSystemStmt:
			{
				const char *name = ((AlterSystemStmt *) stmt)->setstmt->name;

				/* trialvault's settings, and RESET ALL (name NULL). */
				return name == NULL || pg_strncasecmp(name, "trialvault.", 11) == 0;
			}
		default:
			return false;
	}
}

/*
 * Run a role statement; when it fails, queue the record of the refusal
 * (made beforehand, so that only the message is left to add).
 */
static void
tv_run_role_stmt(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				 ProcessUtilityContext context, ParamListInfo params,
				 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc,
				 TvLogRecord *refused, const char *target)
{
	Node	   *stmt = pstmt->utilityStmt;
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		if (prev_utility_hook)
			prev_utility_hook(pstmt, queryString, readOnlyTree, context, params,
							  queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		ErrorData  *e;
		MemoryContext ecxt = MemoryContextSwitchTo(cxt);

		e = CopyErrorData();
		MemoryContextSwitchTo(ecxt);

		/*
		 * Queued at once (the transaction is failing): a refusal is on
		 * record whatever becomes of it.
		 */
		tv_change_detail(refused, target,
						 psprintf("%s refused: %s",
								  GetCommandTagName(CreateCommandTag(stmt)), e->message));
		if (!tv_log_enqueue(refused))
			tv_log_fallback(refused);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

static void
tv_accounts_utility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	const char *target;
	TvLogRecord refused;

	if (!tv_is_role_stmt(stmt))
	{
		if (prev_utility_hook)
			prev_utility_hook(pstmt, queryString, readOnlyTree, context, params,
							  queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
		return;
	}

	/*
	 * The text of a top-level statement is the buffer PostgreSQL reports
	 * from (debug_query_string): redacted there, it is redacted for
	 * pg_stat_statements, pg_stat_activity and error reports alike.  Other
	 * texts (SPI callers') may be read-only; they are not touched.
	 */
	if (queryString != NULL && queryString == debug_query_string &&
		((IsA(stmt, CreateRoleStmt) && tv_options_have_password(((CreateRoleStmt *) stmt)->options)) ||
		 (IsA(stmt, AlterRoleStmt) && tv_options_have_password(((AlterRoleStmt *) stmt)->options))) &&
		tv_redact_passwords((char *) queryString))
		pgstat_report_activity(STATE_RUNNING, queryString);

	/*
	 * The record of a refusal is made before, so that nothing but copying
	 * the message is left to do once the statement has failed.
	 */
	target = IsA(stmt, CreateRoleStmt) ? ((CreateRoleStmt *) stmt)->role :
		IsA(stmt, AlterRoleStmt) ? tv_rolespec_name(((AlterRoleStmt *) stmt)->role) :
		IsA(stmt, AlterRoleSetStmt) ? tv_rolespec_name(((AlterRoleSetStmt *) stmt)->role) :
		IsA(stmt, RenameStmt) ? ((RenameStmt *) stmt)->subname : "";
	tv_change_record(&refused, "account_change_refused", target, NULL);

	tv_run_role_stmt(pstmt, queryString, readOnlyTree, context, params, queryEnv,
					 dest, qc, &refused, target);
	tv_note_change(stmt);
	if (tv_password_max_age > 0 && tv_sets_password(stmt))
		tv_age_password(target);
}

/* ---------------------------------------------------------------------
 * Durable at commit
 * ---------------------------------------------------------------------
 */

static void
tv_accounts_xact(XactEvent event, void *arg)
{
	List	   *pending;
	ListCell   *lc;
	bool		superuser;

	if (event != XACT_EVENT_PRE_COMMIT)
	{
		if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
			event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE)
			tv_pending = NIL;	/* freed with TopTransactionContext */
		return;
	}
	if (tv_pending == NIL)
		return;
	pending = tv_pending;
	tv_pending = NIL;
	superuser = superuser_arg(GetSessionUserId());

	foreach(lc, pending)
	{
		TvPendingChange *c = lfirst(lc);
		TvLogRecord alt;
		ErrorData  *edata;

		/*
		 * In place of the record, when it cannot be made durable: the
		 * superuser's change, committed unrecorded; the ordinary role's,
		 * refused.
		 */
		alt = c->rec;
		if (c->rec.kind == TV_LOG_PASSWORD)
		{
			/*
			 * The role exists now (CREATE ROLE of this transaction too),
			 * unless the transaction dropped it again: no history then.
			 */
			Oid			roleid = get_role_oid(c->rec.study, true);

			if (!OidIsValid(roleid))
				continue;
			c->rec.doc_id = alt.doc_id = roleid;
			c->rec.has_doc = alt.has_doc = true;
		}
		else
			strlcpy(alt.reason, superuser ? "account_change_fallback" : "account_change_refused",
					sizeof(alt.reason));
		edata = tv_log_try_submit_alt(&c->rec, &alt);
		if (c->rec.kind == TV_LOG_PASSWORD && (edata == NULL || superuser))
			tv_password_history_add((Oid) c->rec.doc_id, c->rec.detail);
		if (edata == NULL)
			continue;
		if (!superuser)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the role change could not be put on record, so it is not made"),
					 errdetail("%s", edata->message),
					 errhint("Role changes commit only once they are in the trialvault audit trail; only superusers can make them while they cannot be.")));
		ereport(LOG,
				(errmsg("trialvault account change fallback: %s by superuser \"%s\" committed without a durable record: %s",
						c->rec.reason, c->rec.session_user, edata->message),
				 errdetail_internal("%s", c->rec.detail)));
	}
}

static void
tv_accounts_subxact(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	foreach(lc, tv_pending)
	{
		TvPendingChange *c = lfirst(lc);

		if (c->subid >= mySubid)
			tv_pending = foreach_delete_current(tv_pending, lc);
	}
}

/*
 * Messages composed before the statement ran (log_statement's "statement:"
 * line) or from another copy of its text: the literal after PASSWORD is
 * redacted in them too.
 */
static void
tv_accounts_emit_log(ErrorData *edata)
{
	if (edata->message && strcasestr(edata->message, "password"))
		tv_redact_passwords(edata->message);
	if (edata->detail && strcasestr(edata->detail, "password"))
		tv_redact_passwords(edata->detail);
	if (edata->detail_log && strcasestr(edata->detail_log, "password"))
		tv_redact_passwords(edata->detail_log);
	if (edata->context && strcasestr(edata->context, "password"))
		tv_redact_passwords(edata->context);
	if (edata->internalquery && strcasestr(edata->internalquery, "password"))
		tv_redact_passwords(edata->internalquery);
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * tv_accounts_init: the hooks, at preload.
 */
void
tv_accounts_init(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = tv_accounts_utility;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = tv_accounts_emit_log;
	RegisterXactCallback(tv_accounts_xact, NULL);
	RegisterSubXactCallback(tv_accounts_subxact, NULL);
}
