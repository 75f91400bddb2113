/*-------------------------------------------------------------------------
 *
 * rules.c
 *		Who may do what in a study: the access rules, each written once.
 *
 * A member's standing in a study is the roles they hold there now (a role
 * at one site, or study-wide), read from trialvault._current_roles(), which
 * replays the membership events.  Everything a role entitles to is decided
 * here, from that standing and the facts of a document:
 *
 *	open_document		tv_open_reason(): the everyday grants (the loader, a
 *						document without PHI, site staff and investigators
 *						of its site, safety for an SAE), monitors authorized
 *						for its site now, and the reason for every refusal;
 *						emergency_open: tv_emergency_reason()
 *	my_documents		which sites' documents are listed (tv_scope
 *						"documents"), and whose PHI fingerprint is shown
 *						(the same tv_open_reason())
 *	my_sites			may load (tv_may_load()), what may be opened there
 *	my_decryption_log	whose log rows are read (tv_scope "log_sites")
 *	load_document		tv_may_load()
 *
 * What SQL still answers is data, not rules: the current roles, whether
 * someone ever was a member, a monitor's authorization at a site right now
 * (trialvault._monitor_now()), and whether an emergency reason is a reason
 * (trialvault._emergency_reason_ok()).  Management functions that check a
 * role (grant_role, authorize_monitor, ...) do so in their own SQL, once.
 *
 * Standings are cached per backend and stay valid while the generation
 * numbers of trialvault.memberships and trialvault.studies have not moved
 * (tv_chain_generation); monitor authorizations expire with time and are
 * never cached across calls.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "trialvault.h"

static const char *const tv_role_names[TV_NROLES] = {
	"site_staff", "investigator", "monitor", "safety", "sponsor", "auditor"
};

const char *
tv_role_name(TvStudyRole role)
{
	return tv_role_names[role];
}

static int
role_from_name(const char *name)
{
	int			i;

	for (i = 0; i < TV_NROLES; i++)
		if (strcmp(name, tv_role_names[i]) == 0)
			return i;
	return -1;
}

/* ---------------------------------------------------------------------
 * Standings, cached
 * ---------------------------------------------------------------------
 */
#define TV_STANDING_CACHE 8

static TvStanding *standing_cache[TV_STANDING_CACHE];
static int	standing_cache_next = 0;
static MemoryContext standing_cxt = NULL;
static SPIPlanPtr standing_plan = NULL;

static void
standing_free(TvStanding *s)
{
	int			i;

	for (i = 0; i < s->nroles; i++)
		if (s->roles[i].site)
			pfree(s->roles[i].site);
	if (s->roles)
		pfree(s->roles);
	pfree(s);
}

/*
 * The generation numbers of the tables a standing is read from; false when
 * a cached standing cannot be trusted (see tv_chain_generation).
 */
static bool
standing_gens(uint64 *gens)
{
	static const char *const tables[2] = {"memberships", "studies"};

	return tv_tables_generation(tables, 2, gens);
}

/*
 * A member's standing in a study: NULL when there is no such study.  The
 * caller runs as the extension's owner, connected to SPI.  The result is
 * the cache's (valid until the next call) or, when it cannot be cached,
 * allocated in CurrentMemoryContext.
 */
TvStanding *
tv_standing(const char *study, const char *member)
{
	Oid			types[2] = {TEXTOID, NAMEOID};
	Datum		values[2];
	NameData	mname;
	uint64		gens[2];
	bool		cacheable;
	TvStanding *s;
	MemoryContext old;
	int			slot;
	uint64		i;

	/* Read before the query's snapshot is taken (see tv_chain_generation). */
	cacheable = standing_gens(gens);
	for (slot = 0; slot < TV_STANDING_CACHE; slot++)
	{
		s = standing_cache[slot];
		if (s && strcmp(s->study, study) == 0 && strcmp(NameStr(s->member), member) == 0)
		{
			if (cacheable && s->gens[0] == gens[0] && s->gens[1] == gens[1])
				return s;
			break;
		}
	}

	values[0] = CStringGetTextDatum(study);
	values[1] = tv_name_datum(&mname, member);
	if (SPI_execute_plan(tv_kept_plan(&standing_plan,
									  "SELECT s.study_id, EXISTS (SELECT 1 FROM trialvault.memberships m "
									  "                           WHERE m.study = $1 AND m.member = $2), "
									  "       c.site, c.study_role "
									  "FROM trialvault.studies s "
									  "LEFT JOIN LATERAL trialvault._current_roles($1, $2) c ON true "
									  "WHERE s.code = $1",
									  2, types),
						 values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the roles of %s in study %s", member, study);
	if (SPI_processed == 0)
		return NULL;

	if (cacheable && standing_cxt == NULL)
		standing_cxt = AllocSetContextCreate(TopMemoryContext, "trialvault standings",
											 ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cacheable ? standing_cxt : CurrentMemoryContext);
	s = palloc0(sizeof(TvStanding));
	strlcpy(s->study, study, sizeof(s->study));
	namestrcpy(&s->member, member);
	s->gens[0] = gens[0];
	s->gens[1] = gens[1];
	s->roles = palloc0(sizeof(TvRoleHeld) * SPI_processed);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *site;
		char	   *role;
		int			r;

		s->study_id = DatumGetInt32(SPI_getbinval(tup, td, 1, &isnull));
		s->ever_member = DatumGetBool(SPI_getbinval(tup, td, 2, &isnull));
		role = SPI_getvalue(tup, td, 4);
		if (role == NULL)
			continue;			/* the one row of a study without roles */
		r = role_from_name(role);
		if (r < 0)
			elog(ERROR, "trialvault.memberships holds an unknown study role \"%s\"", role);
		site = SPI_getvalue(tup, td, 3);
		s->roles[s->nroles].site = site ? pstrdup(site) : NULL;
		s->roles[s->nroles].role = (TvStudyRole) r;
		s->nroles++;
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);

	if (cacheable)
	{
		/* Replace the stale entry for this key, or the oldest one. */
		if (slot == TV_STANDING_CACHE)
			slot = standing_cache_next++ % TV_STANDING_CACHE;
		if (standing_cache[slot])
			standing_free(standing_cache[slot]);
		standing_cache[slot] = s;
	}
	return s;
}

/* A copy of a standing in CurrentMemoryContext (the cache's may be replaced). */
TvStanding *
tv_standing_copy(const TvStanding *s)
{
	TvStanding *c = palloc(sizeof(TvStanding));
	int			i;

	*c = *s;
	c->roles = palloc(sizeof(TvRoleHeld) * Max(s->nroles, 1));
	for (i = 0; i < s->nroles; i++)
	{
		c->roles[i].role = s->roles[i].role;
		c->roles[i].site = s->roles[i].site ? pstrdup(s->roles[i].site) : NULL;
	}
	return c;
}

/* Does the member hold role at site (NULL: study-wide)? */
bool
tv_holds(const TvStanding *s, const char *site, TvStudyRole role)
{
	int			i;

	for (i = 0; i < s->nroles; i++)
	{
		const TvRoleHeld *r = &s->roles[i];

		if (r->role != role)
			continue;
		if (site == NULL ? r->site == NULL : (r->site != NULL && strcmp(r->site, site) == 0))
			return true;
	}
	return false;
}

/* Does the member hold role anywhere (at any site, or study-wide)? */
static bool
holds_anywhere(const TvStanding *s, TvStudyRole role)
{
	int			i;

	for (i = 0; i < s->nroles; i++)
		if (s->roles[i].role == role)
			return true;
	return false;
}

/* Are all the member's roles among the given study-wide ones? */
static bool
holds_only(const TvStanding *s, int nallowed, const TvStudyRole *allowed)
{
	int			i;
	int			j;

	for (i = 0; i < s->nroles; i++)
	{
		bool		ok = false;

		for (j = 0; j < nallowed && !ok; j++)
			ok = s->roles[i].site == NULL && s->roles[i].role == allowed[j];
		if (!ok)
			return false;
	}
	return true;
}

/* ---------------------------------------------------------------------
 * The rules
 * ---------------------------------------------------------------------
 */

/* Site staff and investigators load documents for their own site. */
bool
tv_may_load(const TvStanding *s, const char *site)
{
	return tv_holds(s, site, TV_ROLE_SITE_STAFF) || tv_holds(s, site, TV_ROLE_INVESTIGATOR);
}

/* Does an open_document reason grant access? */
bool
tv_reason_grants(const char *reason)
{
	static const char *const granting[] = {
		"loader", "no_phi", "site_staff", "investigator", "safety", "monitor", "emergency"
	};
	int			i;

	for (i = 0; i < (int) lengthof(granting); i++)
		if (strcmp(reason, granting[i]) == 0)
			return true;
	return false;
}

/*
 * Why the member may open a document, or why not: the reason recorded in
 * the decryption log (tv_reason_grants() tells which grant).  monitor_state
 * gives a monitor's authorization at the document's site now ("valid",
 * "expired", "revoked" or "none"); it is asked only for monitors.
 */
const char *
tv_open_reason(const TvStanding *s, const TvDocFacts *d, const char *requester,
			   TvMonitorStateFn monitor_state, void *arg)
{
	static const TvStudyRole sponsor_auditor[] = {TV_ROLE_SPONSOR, TV_ROLE_AUDITOR};
	static const TvStudyRole auditor[] = {TV_ROLE_AUDITOR};

	if (s->nroles == 0)
		return s->ever_member ? "membership_revoked" : "not_a_member";

	/* The everyday grants, in this order. */
	if (strcmp(d->loaded_by, requester) == 0)
		return "loader";
	if (!d->contains_phi)
		return "no_phi";
	if (tv_holds(s, d->site, TV_ROLE_SITE_STAFF))
		return "site_staff";
	if (tv_holds(s, d->site, TV_ROLE_INVESTIGATOR))
		return "investigator";
	if (strcmp(d->doc_type, "sae") == 0 && tv_holds(s, NULL, TV_ROLE_SAFETY))
		return "safety";

	/* Monitors: only where an investigator has authorized them, until then. */
	if (tv_holds(s, NULL, TV_ROLE_MONITOR))
	{
		const char *state = monitor_state(arg, d->site);

		if (strcmp(state, "valid") == 0)
			return "monitor";
		if (strcmp(state, "expired") == 0)
			return "monitor_authorization_expired";
		if (strcmp(state, "revoked") == 0)
			return "monitor_authorization_revoked";
		return "monitor_not_authorized";
	}

	/* Refused: say why as precisely as the roles allow. */
	if (holds_anywhere(s, TV_ROLE_SPONSOR) && holds_only(s, 2, sponsor_auditor))
		return "sponsor_no_phi";
	if (holds_only(s, 1, auditor))
		return "auditor_no_phi";
	if (holds_anywhere(s, TV_ROLE_SITE_STAFF) || holds_anywhere(s, TV_ROLE_INVESTIGATOR))
		return "other_site";
	return "not_entitled";
}

static SPIPlanPtr reason_plan = NULL;

/*
 * emergency_open: members of trialvault_emergency (as pg_has_role() counts
 * membership: superusers are members of every role) with a reason of at
 * least three words.  Membership of the study does not matter.
 */
const char *
tv_emergency_reason(Oid requester, const char *why)
{
	Oid			emergency = get_role_oid("trialvault_emergency", true);
	Oid			type = TEXTOID;
	Datum		value;
	char		null = ' ';
	bool		isnull;

	if (!OidIsValid(emergency) || !is_member_of_role(requester, emergency))
		return "emergency_not_authorized";
	if (why == NULL)
	{
		null = 'n';
		value = (Datum) 0;
	}
	else
		value = CStringGetTextDatum(why);
	if (!DatumGetBool(tv_spi_value(tv_kept_plan(&reason_plan,
												"SELECT trialvault._emergency_reason_ok($1)",
												1, &type),
								   &value, &null, true, BOOLOID, &isnull)))
		return "emergency_reason_missing";
	return "emergency";
}

/* ---------------------------------------------------------------------
 * Scopes: what the views list
 * ---------------------------------------------------------------------
 */
static SPIPlanPtr sites_plan = NULL;
static SPIPlanPtr monitor_plan = NULL;

/* The sites of a study, or those where the member's monitor authorization is valid now. */
static List *
study_sites(const char *study, const char *monitor)
{
	Oid			types[2] = {TEXTOID, NAMEOID};
	Datum		values[2];
	NameData	mname;
	SPIPlanPtr	plan;
	List	   *sites = NIL;
	MemoryContext outer = CurrentMemoryContext;
	uint64		i;

	values[0] = CStringGetTextDatum(study);
	if (monitor)
	{
		values[1] = tv_name_datum(&mname, monitor);
		plan = tv_kept_plan(&monitor_plan,
							"SELECT s.site FROM trialvault.sites s WHERE s.study = $1 "
							"AND trialvault._monitor_now(s.study, s.site, $2) = 'valid' "
							"ORDER BY s.site",
							2, types);
	}
	else
		plan = tv_kept_plan(&sites_plan,
							"SELECT s.site FROM trialvault.sites s WHERE s.study = $1 ORDER BY s.site",
							1, types);
	if (SPI_execute_plan(plan, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the sites of study %s", study);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *site = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		sites = lappend(sites, MemoryContextStrdup(outer, site));
	}
	SPI_freetuptable(SPI_tuptable);
	return sites;
}

/* The sites where a monitor is authorized now (none for non-monitors). */
List *
tv_monitor_sites(const TvStanding *s)
{
	if (!tv_holds(s, NULL, TV_ROLE_MONITOR))
		return NIL;
	return study_sites(s->study, NameStr(s->member));
}

static List *
sites_where(const TvStanding *s, TvStudyRole a, TvStudyRole b)
{
	List	   *sites = NIL;
	int			i;

	for (i = 0; i < s->nroles; i++)
		if (s->roles[i].site && (s->roles[i].role == a || s->roles[i].role == b))
			sites = list_append_unique(sites, makeString(pstrdup(s->roles[i].site)));
	return sites;
}

static int
cstring_cmp(const ListCell *a, const ListCell *b)
{
	return strcmp((char *) lfirst(a), (char *) lfirst(b));
}

static List *
strings(List *values)
{
	List	   *out = NIL;
	ListCell   *lc;

	foreach(lc, values)
		out = lappend(out, strVal(lfirst(lc)));
	return out;
}

/*
 * What a member may see in a study, by kind, as a list of strings:
 *
 *	documents		sites whose documents they may list: all for safety,
 *					sponsors and auditors; otherwise their own sites as
 *					site staff or investigator, and those they monitor now
 *	monitor_sites	sites they are authorized to monitor now
 *	log_sites		sites whose decryption log they may read: all for
 *					auditors, their own sites for investigators
 *	roles			the study roles they hold
 *
 * Empty for non-members.  The caller runs as the owner, connected to SPI.
 */
List *
tv_scope(const TvStanding *s, const char *what)
{
	if (s->nroles == 0)
		return NIL;
	if (strcmp(what, "roles") == 0)
	{
		List	   *roles = NIL;
		int			r;

		for (r = 0; r < TV_NROLES; r++)
			if (holds_anywhere(s, (TvStudyRole) r))
				roles = lappend(roles, (char *) tv_role_names[r]);
		list_sort(roles, cstring_cmp);
		return roles;
	}
	if (strcmp(what, "documents") == 0)
	{
		if (tv_holds(s, NULL, TV_ROLE_SAFETY) || tv_holds(s, NULL, TV_ROLE_SPONSOR) ||
			tv_holds(s, NULL, TV_ROLE_AUDITOR))
			return study_sites(s->study, NULL);
		return list_concat(strings(sites_where(s, TV_ROLE_SITE_STAFF, TV_ROLE_INVESTIGATOR)),
						   tv_monitor_sites(s));
	}
	if (strcmp(what, "monitor_sites") == 0)
		return tv_monitor_sites(s);
	if (strcmp(what, "log_sites") == 0)
	{
		if (tv_holds(s, NULL, TV_ROLE_AUDITOR))
			return study_sites(s->study, NULL);
		return strings(sites_where(s, TV_ROLE_INVESTIGATOR, TV_ROLE_INVESTIGATOR));
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown scope \"%s\"", what),
			 errhint("Scopes: documents, monitor_sites, log_sites, roles.")));
	return NIL;					/* keep the compiler quiet */
}

/* The roles a member holds at a site or study-wide, by name, sorted. */
List *
tv_roles_at(const TvStanding *s, const char *site)
{
	List	   *roles = NIL;
	int			i;

	for (i = 0; i < s->nroles; i++)
		if (s->roles[i].site == NULL || strcmp(s->roles[i].site, site) == 0)
			roles = lappend(roles, (char *) tv_role_names[s->roles[i].role]);
	list_sort(roles, cstring_cmp);
	return roles;
}

/*
 * What a member may open at a site, in words, for my_sites: the same
 * rules as tv_open_reason() for the documents of that site.
 */
const char *
tv_site_openings(const TvStanding *s, const char *site, bool monitor_valid)
{
	if (tv_holds(s, site, TV_ROLE_SITE_STAFF) || tv_holds(s, site, TV_ROLE_INVESTIGATOR) ||
		monitor_valid)
		return "all documents";
	if (tv_holds(s, NULL, TV_ROLE_SAFETY))
		return "sae documents and documents without PHI";
	return "documents without PHI";
}
