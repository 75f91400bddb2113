/*-------------------------------------------------------------------------
 *
 * login.c
 *		The security audit trail, second part: every connection attempt to
 *		any database of the cluster, successful or not.
 *
 * A connection attempt is decided in three places, and each is watched:
 *
 * - before authentication, pg_hba.conf may refuse it ("no pg_hba.conf
 *	 entry", a "reject" line).  PostgreSQL reports that with a FATAL before
 *	 ClientAuthentication_hook runs, so emit_log_hook sees it;
 * - authentication itself ends in ClientAuthentication_hook, with the
 *	 outcome (the reason for a failure is looked up there: the role does not
 *	 exist, has no password, its password expired, or the password was
 *	 wrong);
 * - after authentication, InitPostgres may still refuse (the database does
 *	 not exist, the role may not log in, too many connections): another
 *	 FATAL, seen by emit_log_hook.  When it does not, it commits its startup
 *	 transaction, and that commit is where the session is let in.
 *
 * The attempt runs before the session has a transaction of its own, so its
 * record goes through the log writer's queue (worker/logwriter.c) into
 * trialvault.audit_events of the database named by trialvault.database.  A
 * failed attempt's record is queued before the backend exits.  A successful
 * one is let in only once its record is durable (the writer commits many
 * connections in one group commit).  When that cannot be done (writer down,
 * queue full, timeout) ordinary roles are refused; superusers are let in, so
 * that a DBA can always repair the system, with a server log line under the
 * fixed prefix "trialvault login fallback:", and the record is kept in
 * shared memory and put on record by the writer when it runs again.
 *
 * Sessions end here too: study members idle for longer than
 * trialvault.member_idle_timeout are logged off (tv_idle_sweep).
 *
 * "Too many clients already" is decided before the backend has a process
 * slot, so it cannot be queued: it is only in the server log.  Failures are
 * seen through emit_log_hook only while log_min_messages lets FATAL messages
 * through (it always does unless set to PANIC).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "common/ip.h"
#include "libpq/auth.h"
#include "libpq/hba.h"
#include "libpq/libpq-be.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/acl.h"
#include "utils/backend_status.h"
#include "commands/dbcommands.h"
#include "pgstat.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "trialvault.h"

static bool tv_audit_logins = true;
static int	tv_member_idle_timeout = 900;

static ClientAuthentication_hook_type prev_client_auth_hook = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * This backend's attempt: authenticated but not yet let in (the startup
 * transaction has not committed), and whether its record is settled (put
 * on record, or found not to need one), so that it is recorded once.
 */
static bool tv_login_authenticated = false;
static bool tv_login_settled = false;

/*
 * Copy src into dst as valid UTF-8 of fewer than size bytes: invalid bytes
 * become '?', and a character is never cut.  Role and database names come
 * from the client as bytes; a name PostgreSQL cut at NAMEDATALEN, or sent
 * by a prober, must not make the trail's insert (or the JSON) fail.
 */
static void
tv_copy_utf8(char *dst, size_t size, const char *src)
{
	const unsigned char *s = (const unsigned char *) (src ? src : "");
	size_t		o = 0;

	while (*s)
	{
		int			len = pg_utf_mblen(s);
		int			i;

		for (i = 1; i < len && s[i]; i++)
			;
		if (i < len || !pg_utf8_islegal(s, len))
		{
			if (o + 1 >= size)
				break;
			dst[o++] = '?';
			s++;
			continue;
		}
		if (o + len >= size)
			break;
		memcpy(dst + o, s, len);
		o += len;
		s += len;
	}
	dst[o] = '\0';
}

/*
 * tv_json_field: add "key": value to the JSON object being built in buf
 * (opened with '{'), escaped; an empty value is left out.
 */
void
tv_json_field(StringInfo buf, const char *key, const char *value)
{
	if (value == NULL || *value == '\0')
		return;
	appendStringInfoString(buf, buf->len > 1 ? ", " : "");
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
	escape_json(buf, value);
}

/*
 * tv_login_record: the record of this backend's connection attempt.
 * event is "login", "login_failed", "login_fallback" or "role_locked";
 * reason says why it failed (NULL when it did not); until, when not 0, is
 * the end of a lockout.  The detail is a JSON object (database, method,
 * client_port, reason, until), made short enough for the record: the
 * login_attempts view and the lockout state read it as jsonb, so it must
 * never be cut.
 */
void
tv_login_record(TvLogRecord *rec, const char *event, const char *reason,
				TimestampTz until)
{
	Port	   *port = MyProcPort;
	char		host[NI_MAXHOST];
	char		service[NI_MAXSERV];
	char		database[NAMEDATALEN];
	char		why[TV_LOG_DETAIL];
	const char *method = NULL;
	StringInfoData buf;
	int			keep;

	memset(rec, 0, sizeof(*rec));
	rec->kind = TV_LOG_SECURITY;
	rec->pid = MyProcPid;
	rec->at = GetCurrentTimestamp();
	strlcpy(rec->reason, event, sizeof(rec->reason));
	tv_copy_utf8(rec->requester, sizeof(rec->requester), port->user_name);
	strlcpy(rec->session_user, rec->requester, sizeof(rec->session_user));
	tv_copy_utf8(rec->application_name, sizeof(rec->application_name),
				 port->application_name);
	tv_copy_utf8(database, sizeof(database), port->database_name);
	if (port->hba)
		method = hba_authname(port->hba->auth_method);

	host[0] = service[0] = '\0';
	if (port->raddr.addr.ss_family != AF_UNIX &&
		pg_getnameinfo_all(&port->raddr.addr, port->raddr.salen,
						   host, sizeof(host), service, sizeof(service),
						   NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		strlcpy(rec->client_addr, host, sizeof(rec->client_addr));

	/* Cut the reason (the only long part) until the JSON fits. */
	initStringInfo(&buf);
	tv_copy_utf8(why, sizeof(why), reason);
	keep = strlen(why);
	for (;;)
	{
		why[keep] = '\0';
		resetStringInfo(&buf);
		appendStringInfoChar(&buf, '{');
		tv_json_field(&buf, "database", database);
		tv_json_field(&buf, "method", method);
		tv_json_field(&buf, "client_port", service);
		tv_json_field(&buf, "reason", why);
		if (until != 0)
			tv_json_field(&buf, "until", timestamptz_to_str(until));
		appendStringInfoChar(&buf, '}');
		if (buf.len < TV_LOG_DETAIL || keep == 0)
			break;
		keep /= 2;
		/* Back to a character boundary. */
		while (keep > 0 && (why[keep] & 0xC0) == 0x80)
			keep--;
	}
	if (buf.len < TV_LOG_DETAIL)
		strlcpy(rec->detail, buf.data, sizeof(rec->detail));
	else
		strlcpy(rec->detail, "{}", sizeof(rec->detail));
	pfree(buf.data);
}

/*
 * Why authentication failed, as the catalogs tell (PostgreSQL keeps it from
 * the hook); *counts: whether the failure counts towards a lockout (a wrong
 * password, or another method's failure: what guessing looks like).
 */
static const char *
tv_auth_failure(Port *port, int status, bool *counts)
{
	HeapTuple	tup;
	const char *reason;

	*counts = false;
	if (status == STATUS_EOF)
		return "the client closed the connection during authentication";
	tup = SearchSysCache1(AUTHNAME, PointerGetDatum(port->user_name));
	if (!HeapTupleIsValid(tup))
		return "role does not exist";
	switch (port->hba->auth_method)
	{
		case uaPassword:
		case uaMD5:
		case uaSCRAM:
			{
				bool		nopassword;
				bool		nolimit;
				Datum		until;

				(void) SysCacheGetAttr(AUTHNAME, tup, Anum_pg_authid_rolpassword,
									   &nopassword);
				until = SysCacheGetAttr(AUTHNAME, tup, Anum_pg_authid_rolvaliduntil,
										&nolimit);
				if (nopassword)
					reason = "role has no password";
				else if (!nolimit && DatumGetTimestampTz(until) < GetCurrentTimestamp())
					reason = "password expired";
				else
				{
					reason = "wrong password";
					*counts = true;
				}
				break;
			}
		default:
			reason = psprintf("%s authentication failed",
							  hba_authname(port->hba->auth_method));
			*counts = true;
			break;
	}
	ReleaseSysCache(tup);
	return reason;
}

/* Queue a record, or keep it for the writer's return. */
static void
tv_login_queue(TvLogRecord *rec)
{
	if (!tv_log_enqueue(rec))
		tv_log_fallback(rec);
}

/* Whether roleid is a superuser connecting over a unix socket. */
static bool
tv_local_superuser(Port *port, Oid roleid)
{
	return port->raddr.addr.ss_family == AF_UNIX && superuser_arg(roleid);
}

static void
tv_client_auth(Port *port, int status)
{
	Oid			roleid;
	TimestampTz until;
	const char *reason;
	bool		counts;
	int			failures;
	TvLogRecord rec;

	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);

	/*
	 * A locked-out role is refused whether or not its password was right,
	 * with what a wrong password gets: the client learns nothing, the
	 * server log and the trail say why.  A superuser is never locked out of
	 * the local socket, so that the DBA can always get in to unlock.
	 */
	roleid = get_role_oid(port->user_name, true);
	if (status != STATUS_EOF && OidIsValid(roleid) &&
		(until = tv_lockout_until(roleid)) != 0 && !tv_local_superuser(port, roleid))
	{
		tv_login_settled = true;
		if (tv_audit_logins)
		{
			tv_login_record(&rec, "login_failed",
							psprintf("locked out until %s", timestamptz_to_str(until)), until);
			tv_login_queue(&rec);
		}
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PASSWORD),
				 errmsg("password authentication failed for user \"%s\"", port->user_name),
				 errdetail_log("Role \"%s\" is locked out by trialvault until %s after %d consecutive failed logins; trialvault.unlock_role() ends that sooner.",
							   port->user_name, timestamptz_to_str(until), tv_lockout_threshold)));
	}

	if (status == STATUS_OK)
	{
		tv_login_authenticated = true;
		return;
	}
	tv_login_settled = true;
	reason = tv_auth_failure(port, status, &counts);
	until = 0;
	if (counts && OidIsValid(roleid))
		until = tv_lockout_failed(roleid, &failures);
	if (tv_audit_logins)
	{
		tv_login_record(&rec, "login_failed", reason, 0);
		tv_login_queue(&rec);
	}
	if (until != 0)
	{
		/* The lockout is on record whatever trialvault.audit_logins says. */
		tv_login_record(&rec, "role_locked",
						psprintf("locked out after %d consecutive failed logins", failures),
						until);
		tv_login_queue(&rec);
		ereport(LOG,
				(errmsg("trialvault: role \"%s\" is locked out until %s after %d consecutive failed logins",
						port->user_name, timestamptz_to_str(until), failures)));
	}
}

/*
 * A FATAL while a connection is being set up, before or after
 * authentication: the reason, in the words the trail uses.  PostgreSQL's
 * message (untranslated) follows the short form.
 */
static char *
tv_refusal_reason(ErrorData *edata)
{
	const char *id = edata->message_id ? edata->message_id : "";
	const char *kind;

	if (strncmp(id, "no pg_hba.conf entry", 20) == 0)
		kind = "no pg_hba.conf entry";
	else if (strstr(id, "pg_hba.conf rejects") != NULL)
		kind = "rejected by pg_hba.conf";
	else if (edata->sqlerrcode == ERRCODE_TOO_MANY_CONNECTIONS)
		kind = "too many connections";
	else if (edata->sqlerrcode == ERRCODE_UNDEFINED_DATABASE)
		kind = "database does not exist";
	else if (strcmp(id, "role \"%s\" does not exist") == 0)
		kind = "role does not exist";
	else if (strcmp(id, "role \"%s\" is not permitted to log in") == 0)
		kind = "role may not log in";
	else
		kind = "refused";
	return psprintf("%s: %s", kind, edata->message ? edata->message : "");
}

static void
tv_login_emit_log(ErrorData *edata)
{
	TvLogRecord rec;

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);

	if (edata->elevel != FATAL || tv_login_settled || MyProcPort == NULL ||
		MyProc == NULL || !(ClientAuthInProgress || tv_login_authenticated))
		return;
	tv_login_settled = true;
	tv_login_authenticated = false;
	if (!tv_audit_logins)
		return;
	tv_login_record(&rec, "login_failed", tv_refusal_reason(edata), 0);
	tv_login_queue(&rec);
}

/*
 * Let the session in only once its login is durable; when it cannot be,
 * refuse an ordinary role, and let a superuser in with a server log line
 * and a record kept for the writer's return.
 */
static void
tv_login_durable(bool superuser)
{
	TvLogRecord rec;
	TvLogRecord alt;
	ErrorData  *edata;

	tv_login_record(&rec, "login", NULL, 0);
	if (superuser)
		tv_login_record(&alt, "login_fallback",
						"superuser let in without a durable record of the login", 0);
	else
		tv_login_record(&alt, "login_failed",
						"refused: the login could not be put on record", 0);

	/* When it fails, alt is recorded in its place, now or when the writer is back. */
	edata = tv_log_try_submit_alt(&rec, &alt);
	if (edata == NULL)
		return;

	if (!superuser)
		ereport(FATAL,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the login of role \"%s\" could not be put on record", rec.requester),
				 errdetail("%s", edata->message),
				 errhint("Logins are let in only once they are in the trialvault audit trail; only superusers are let in while they cannot be.")));

	ereport(LOG,
			(errmsg("trialvault login fallback: superuser \"%s\" let in to database \"%s\" without a durable record: %s",
					rec.requester, MyProcPort->database_name, edata->message)));
}

/*
 * The startup transaction commits: InitPostgres has found nothing to
 * refuse.  Let the session in once its record is durable.
 */
static void
tv_login_xact(XactEvent event, void *arg)
{
	TvLogRecord rec;
	Oid			roleid;
	bool		superuser;

	if (event != XACT_EVENT_PRE_COMMIT || !tv_login_authenticated)
		return;
	tv_login_authenticated = false;
	tv_login_settled = true;
	roleid = GetSessionUserId();
	superuser = superuser_arg(roleid);

	/*
	 * A standby can write nothing, so no login there can be put on record:
	 * only superusers are let in, as when the writer is down on a primary
	 * (but the record cannot be kept for later: the server log has it).
	 */
	if (tv_audit_logins && RecoveryInProgress())
	{
		if (!superuser)
			ereport(FATAL,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the login of role \"%s\" cannot be put on record on a standby", MyProcPort->user_name),
					 errdetail("This server is in recovery: the trialvault audit trail cannot be written here."),
					 errhint("Connect to the primary. Only superusers may log in to a standby.")));
		ereport(LOG,
				(errmsg("trialvault login fallback: superuser \"%s\" let in to database \"%s\" on a standby, where no login can be put on record",
						MyProcPort->user_name, MyProcPort->database_name)));
		return;
	}

	/*
	 * Until the lockout counters are rebuilt from the trail (by the log
	 * writer, at its start), a locked-out role cannot be told apart.
	 */
	if (!superuser && tv_lockout_enabled() && !tv_lockout_loaded())
	{
		if (tv_audit_logins)
		{
			tv_login_record(&rec, "login_failed",
							"refused: the lockout state is not loaded yet", 0);
			tv_login_queue(&rec);
		}
		ereport(FATAL,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the login of role \"%s\" cannot be checked against lockouts yet", MyProcPort->user_name),
				 errdetail("The trialvault log writer rebuilds the lockout state from the audit trail when it starts; it has not yet."),
				 errhint("Try again in a few seconds; the server log says why if it persists.")));
	}

	if (tv_audit_logins)
		tv_login_durable(superuser);
	tv_lockout_succeeded(roleid);
}

/*
 * tv_idle_sweep: end the sessions of study members (members of
 * trialvault_user, superusers excepted) idle for longer than
 * trialvault.member_idle_timeout, in any database, and fill a record of
 * each into recs (at most max); returns how many.  Called by the log writer
 * about once a second, inside a transaction.
 *
 * PostgreSQL's idle_session_timeout would do the ending, but any role can
 * SET it for its own session, above anything set at login; a sweep from the
 * writer cannot be turned off by the session it ends.  Sessions idle inside
 * a transaction are ended too.
 */
int
tv_idle_sweep(TvLogRecord *recs, int max)
{
	Oid			members;
	TimestampTz now = GetCurrentTimestamp();
	int			nb;
	int			i;
	int			n = 0;

	if (tv_member_idle_timeout <= 0 ||
		!OidIsValid(members = get_role_oid("trialvault_user", true)))
		return 0;
	nb = pgstat_fetch_stat_numbackends();
	for (i = 1; i <= nb && n < max; i++)
	{
		LocalPgBackendStatus *l = pgstat_fetch_stat_local_beentry(i);
		PgBackendStatus *be;
		TvLogRecord *rec;
		char		host[NI_MAXHOST];
		char	   *database;
		StringInfoData buf;

		if (l == NULL)
			continue;
		be = &l->backendStatus;
		if (be->st_procpid <= 0 || be->st_backendType != B_BACKEND ||
			(be->st_state != STATE_IDLE && be->st_state != STATE_IDLEINTRANSACTION &&
			 be->st_state != STATE_IDLEINTRANSACTION_ABORTED) ||
			!TimestampDifferenceExceeds(be->st_state_start_timestamp, now,
										tv_member_idle_timeout * 1000) ||
			superuser_arg(be->st_userid) || !is_member_of_role(be->st_userid, members))
			continue;
		/* As pg_terminate_backend() does. */
		if (kill(be->st_procpid, SIGTERM) != 0)
			continue;

		rec = &recs[n++];
		memset(rec, 0, sizeof(*rec));
		rec->kind = TV_LOG_SECURITY;
		rec->pid = be->st_procpid;
		rec->at = now;
		strlcpy(rec->reason, "session_idle_logoff", sizeof(rec->reason));
		tv_copy_utf8(rec->requester, sizeof(rec->requester),
					 GetUserNameFromId(be->st_userid, true));
		strlcpy(rec->session_user, rec->requester, sizeof(rec->session_user));
		tv_copy_utf8(rec->application_name, sizeof(rec->application_name), be->st_appname);
		if (be->st_clientaddr.addr.ss_family != AF_UNIX &&
			be->st_clientaddr.addr.ss_family != AF_UNSPEC &&
			pg_getnameinfo_all(&be->st_clientaddr.addr, be->st_clientaddr.salen,
							   host, sizeof(host), NULL, 0, NI_NUMERICHOST) == 0)
			strlcpy(rec->client_addr, host, sizeof(rec->client_addr));
		database = get_database_name(be->st_databaseid);
		initStringInfo(&buf);
		appendStringInfoChar(&buf, '{');
		tv_json_field(&buf, "database", database ? database : "");
		tv_json_field(&buf, "idle_since", timestamptz_to_str(be->st_state_start_timestamp));
		tv_json_field(&buf, "reason",
					  psprintf("idle for more than %d s (trialvault.member_idle_timeout)%s",
							   tv_member_idle_timeout,
							   be->st_state == STATE_IDLE ? "" : ", inside a transaction"));
		appendStringInfoChar(&buf, '}');
		strlcpy(rec->detail, buf.len < TV_LOG_DETAIL ? buf.data : "{}", sizeof(rec->detail));
		ereport(LOG,
				(errmsg("trialvault ended the idle session of study member \"%s\" (pid %d): idle for more than %d s",
						rec->requester, rec->pid, tv_member_idle_timeout)));
	}
	pgstat_clear_snapshot();
	return n;
}

/*
 * tv_login_init: the setting and the hooks, at preload.
 */
void
tv_login_init(void)
{
	DefineCustomBoolVariable("trialvault.audit_logins",
							 "Record every connection attempt in the audit trail, and let a session in only once its login is on record.",
							 "Off: connection attempts are not recorded (for measurements, not for production).",
							 &tv_audit_logins,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("trialvault.member_idle_timeout",
							"Ends the sessions of study members idle for longer than this.",
							"0 turns it off. Superusers' sessions are never ended; sessions idle inside a transaction are.",
							&tv_member_idle_timeout,
							900, 0, 7 * 24 * 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = tv_client_auth;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = tv_login_emit_log;
	RegisterXactCallback(tv_login_xact, NULL);
}
