/*-------------------------------------------------------------------------
 *
 * verify.c
 *		trialvault.verify(regclass): recompute a protected table's chain and
 *		name the first row that does not fit.
 *
 * One sequential scan recomputes every row's hash from its contents and its
 * recorded tv_prev_hash (finding rows changed in place); then, in tv_seq
 * order, every link is checked: each row's tv_prev_hash must be the digest
 * of the rows it names, and those rows must exist (finding rows removed,
 * inserted out of band, or rewritten with a fresh hash).  The rows no row
 * refers to are the chain's open ends; their digest, head_digest, is the
 * value to anchor outside the server, which a later release signs.
 *
 * The verdict also covers what the rows depend on: the table's guard
 * triggers, what could hide or add rows (row level security, rules,
 * unprotected inheritance children), and the extension's own objects as
 * the installed version's script sealed them (catalog.c).  The first
 * problem found is reported in "guard".
 *
 * Memory: about 100 bytes per row for the link check.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "trialvault.h"

typedef struct VRow
{
	int64		seq;
	ItemPointerData tid;
	int32		refoff;			/* into refs[], or -1 when tv_prev_seqs is bad */
	int32		nrefs;
	bool		referenced;
	bool		bad;			/* counted in bad_rows already */
	uint8		hash[TV_HASH_LEN];
	uint8		prev[TV_HASH_LEN];
} VRow;

typedef struct VState
{
	VRow	   *rows;
	int64		nrows;
	int64		maxrows;
	int64	   *refs;
	int64		nrefs;
	int64		maxrefs;
	/* the first problem, by tv_seq */
	int64		bad_rows;
	int64		first_bad_seq;
	char	   *first_bad;
} VState;

/*
 * A problem with a row: counted once per row however many checks it fails
 * (row is NULL for a row that is not kept), the first by tv_seq kept.
 */
static void
note_bad(VState *st, VRow *row, int64 seq, ItemPointer tid, const char *why)
{
	if (row == NULL || !row->bad)
		st->bad_rows++;
	if (row)
		row->bad = true;
	if (st->first_bad == NULL || seq < st->first_bad_seq)
	{
		if (st->first_bad)
			pfree(st->first_bad);
		st->first_bad_seq = seq;
		if (seq == PG_INT64_MIN)
			st->first_bad = psprintf("row ctid=(%u,%u): %s",
									 ItemPointerGetBlockNumberNoCheck(tid),
									 ItemPointerGetOffsetNumberNoCheck(tid), why);
		else
			st->first_bad = psprintf("row tv_seq=%lld ctid=(%u,%u): %s",
									 (long long) seq,
									 ItemPointerGetBlockNumberNoCheck(tid),
									 ItemPointerGetOffsetNumberNoCheck(tid), why);
	}
}

static int
vrow_cmp(const void *a, const void *b)
{
	int64		x = ((const VRow *) a)->seq;
	int64		y = ((const VRow *) b)->seq;

	return (x > y) - (x < y);
}

static VRow *
find_row_in(VState *st, int64 seq, int64 lo, int64 hi)
{
	while (lo <= hi)
	{
		int64		mid = lo + (hi - lo) / 2;

		if (st->rows[mid].seq == seq)
			return &st->rows[mid];
		if (st->rows[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

static VRow *
find_row(VState *st, int64 seq)
{
	return find_row_in(st, seq, 0, st->nrows - 1);
}

/*
 * A row's predecessors are nearly always the rows just before it in
 * tv_seq order (row i of the sorted array): look there before searching
 * the whole array, whose far ends are cold in the CPU's caches.
 */
static VRow *
find_row_near(VState *st, int64 seq, int64 i)
{
	int64		lo = Max(i - 64, 0);

	if (i > 0 && st->rows[lo].seq <= seq && seq <= st->rows[i - 1].seq)
		return find_row_in(st, seq, lo, i - 1);
	return find_row(st, seq);
}

static bool
get_hash_col(TupleTableSlot *slot, AttrNumber att, uint8 *out)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	bytea	   *b;

	if (isnull)
		return false;
	b = DatumGetByteaPP(d);
	if (VARSIZE_ANY_EXHDR(b) != TV_HASH_LEN)
		return false;
	memcpy(out, VARDATA_ANY(b), TV_HASH_LEN);
	return true;
}

/*
 * First pass: recompute each row's own hash and collect its links.
 */
static void
scan_rows(Relation rel, const TvChainCols *cols, VState *st)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	TableScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext rowcxt;
	MemoryContext old;
	TvRowLayout *layout = tv_row_layout(tupdesc, cols);

	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "trialvault verify row",
								   ALLOCSET_DEFAULT_SIZES);
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		VRow	   *r;
		bool		isnull;
		Datum		d;
		bool		matches;

		CHECK_FOR_INTERRUPTS();
		if (st->nrows == st->maxrows)
		{
			st->maxrows *= 2;
			st->rows = repalloc_huge(st->rows, st->maxrows * sizeof(VRow));
		}
		r = &st->rows[st->nrows];
		memset(r, 0, sizeof(VRow));
		r->tid = slot->tts_tid;
		r->refoff = -1;

		old = MemoryContextSwitchTo(rowcxt);
		d = slot_getattr(slot, cols->seq, &isnull);
		if (isnull)
		{
			MemoryContextSwitchTo(old);
			note_bad(st, NULL, PG_INT64_MIN, &r->tid, "tv_seq is NULL");
			MemoryContextReset(rowcxt);
			continue;			/* not kept: it cannot be linked to */
		}
		r->seq = DatumGetInt64(d);
		st->nrows++;

		if (!get_hash_col(slot, cols->hash, r->hash) ||
			!get_hash_col(slot, cols->prev_hash, r->prev))
		{
			MemoryContextSwitchTo(old);
			note_bad(st, r, r->seq, &r->tid, "tv_hash or tv_prev_hash is NULL or not 32 bytes");
			MemoryContextReset(rowcxt);
			continue;
		}

		{
			int64	   *refs;
			int			n;

			if (tv_get_prev_seqs(slot, cols->prev_seqs, &refs, &n))
			{
				while (st->nrefs + n > st->maxrefs)
				{
					st->maxrefs *= 2;
					st->refs = repalloc_huge(st->refs, st->maxrefs * sizeof(int64));
				}
				r->refoff = st->nrefs;
				r->nrefs = n;
				memcpy(st->refs + st->nrefs, refs, n * sizeof(int64));
				st->nrefs += n;
			}
		}

		/* Deformed once, for the chain columns above and the digest. */
		slot_getallattrs(slot);
		matches = tv_row_values_match(layout, slot->tts_values, slot->tts_isnull,
									  r->seq, r->prev, r->hash);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);

		if (!matches)
			note_bad(st, r, r->seq, &r->tid,
					 "contents do not match tv_hash (the row was changed after it was inserted)");
		else if (r->refoff < 0)
			note_bad(st, r, r->seq, &r->tid, "tv_prev_seqs is NULL or malformed");
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	MemoryContextDelete(rowcxt);
}

/*
 * Second pass, in tv_seq order: every link must lead to an existing earlier
 * row, and the recorded digest of the linked rows must match them.
 */
static void
check_links(VState *st)
{
	int64		i;
	TvHead	   *refrows = NULL;
	int			maxref = 0;

	for (i = 1; i < st->nrows; i++)
	{
		if (st->rows[i].seq < st->rows[i - 1].seq)
		{
			qsort(st->rows, st->nrows, sizeof(VRow), vrow_cmp);
			break;
		}
	}

	for (i = 0; i < st->nrows; i++)
	{
		VRow	   *r = &st->rows[i];
		uint8		digest[TV_HASH_LEN];
		int			j;
		bool		broken = false;

		CHECK_FOR_INTERRUPTS();
		if (i > 0 && st->rows[i - 1].seq == r->seq)
		{
			note_bad(st, r, r->seq, &r->tid, "another row has the same tv_seq");
			continue;
		}
		if (r->refoff < 0)
			continue;
		if (r->nrefs > maxref)
		{
			maxref = Max(r->nrefs, 16);
			refrows = refrows ? repalloc(refrows, maxref * sizeof(TvHead))
				: palloc(maxref * sizeof(TvHead));
		}
		for (j = 0; j < r->nrefs && !broken; j++)
		{
			int64		ref = st->refs[r->refoff + j];
			VRow	   *p;

			if (ref >= r->seq || (j > 0 && ref <= st->refs[r->refoff + j - 1]))
			{
				note_bad(st, r, r->seq, &r->tid,
						 "tv_prev_seqs does not list earlier rows in ascending order");
				broken = true;
				break;
			}
			p = find_row_near(st, ref, i);
			if (p == NULL)
			{
				char	   *why = psprintf("its predecessor tv_seq=%lld is missing (removed?)",
										   (long long) ref);

				note_bad(st, r, r->seq, &r->tid, why);
				broken = true;
				break;
			}
			p->referenced = true;
			refrows[j].seq = ref;
			memcpy(refrows[j].hash, p->hash, TV_HASH_LEN);
		}
		if (broken)
			continue;
		tv_prev_digest(refrows, r->nrefs, digest);
		if (memcmp(digest, r->prev, TV_HASH_LEN) != 0)
			note_bad(st, r, r->seq, &r->tid,
					 "tv_prev_hash does not match its predecessors (a predecessor was changed or replaced)");
	}
}

/*
 * The extension's own objects, compared with what the installed version's
 * script sealed (catalog.c): a function, view or table of the extension
 * changed behind the guards' back makes every verify() report it, since no
 * table's verdict is worth more than the code that guards it.
 */
static char *
extension_problem(void)
{
	char	   *problem;
	MemoryContext outer = CurrentMemoryContext;
	TvAsOwner	as;

	/* The seal is readable by the extension's owner only. */
	tv_owner_spi_begin(&as);
	problem = tv_catalog_problem();
	if (problem)
		problem = MemoryContextStrdup(outer, problem);
	tv_owner_spi_end(&as);
	return problem;
}

/*
 * Verify a protected table: the verdict of trialvault.verify(), with the
 * chain's heads, and the rows kept for tv_verdict_covered().  Refuses
 * (42501, 55000) a table the caller may not read or that is not protected.
 */
void
tv_verify_table(Oid relid, TvVerdict *v)
{
	Relation	rel;
	TvChainCols cols;
	VState	   *st = palloc0(sizeof(VState));
	int64		i;
	AclResult	aclresult;

	memset(v, 0, sizeof(*v));
	rel = try_relation_open(relid, AccessShareLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, RelationGetRelationName(rel));
	if (rel->rd_rel->relkind != RELKIND_RELATION ||
		!tv_find_chain_cols(RelationGetDescr(rel), &cols))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not protected by trialvault",
						RelationGetRelationName(rel)),
				 errdetail("It has no trialvault chain columns to verify."),
				 errhint("Protect it with trialvault.protect('%s').",
						 RelationGetRelationName(rel))));

	st->maxrows = 1024;
	st->rows = MemoryContextAllocHuge(CurrentMemoryContext, st->maxrows * sizeof(VRow));
	st->maxrefs = 1024;
	st->refs = MemoryContextAllocHuge(CurrentMemoryContext, st->maxrefs * sizeof(int64));

	scan_rows(rel, &cols, st);
	check_links(st);

	v->heads = MemoryContextAllocHuge(CurrentMemoryContext,
									  Max(st->nrows, 1) * sizeof(TvHead));
	for (i = 0; i < st->nrows; i++)
	{
		if (st->rows[i].referenced)
			continue;
		v->heads[v->nheads].seq = st->rows[i].seq;
		memcpy(v->heads[v->nheads].hash, st->rows[i].hash, TV_HASH_LEN);
		v->nheads++;
	}
	tv_prev_digest(v->heads, (int) Min(v->nheads, PG_INT32_MAX), v->head_digest);

	v->guard = tv_guard_problem(relid);
	if (v->guard == NULL)
		v->guard = tv_table_problem(relid);
	if (v->guard == NULL)
		v->guard = extension_problem();
	if (v->guard == NULL && !tv_loaded_at_preload)
		v->guard = pstrdup("trialvault is not in shared_preload_libraries, so its DDL guards are not active in every session");
	relation_close(rel, AccessShareLock);

	v->ok = st->bad_rows == 0 && v->guard == NULL;
	v->nrows = st->nrows;
	v->bad_rows = st->bad_rows;
	v->first_bad = st->first_bad;
	v->state = st;
}

/*
 * How many rows of a verified chain the given heads reach (themselves and
 * every row before them through the links); -1 with *problem set when a
 * head is not in the chain, or is there with another hash.
 */
int64
tv_verdict_covered(TvVerdict *v, const TvHead *heads, int64 nheads, char **problem)
{
	VState	   *st = (VState *) v->state;
	bool	   *seen = palloc0(Max(st->nrows, 1) * sizeof(bool));
	int64	   *stack = palloc(Max(st->nrows, 1) * sizeof(int64));
	int64		depth = 0;
	int64		covered = 0;
	int64		i;

	for (i = 0; i < nheads; i++)
	{
		VRow	   *r = find_row(st, heads[i].seq);

		if (r == NULL)
		{
			*problem = psprintf("row tv_seq=%lld, a head when the digest was taken, is missing",
								(long long) heads[i].seq);
			return -1;
		}
		if (memcmp(r->hash, heads[i].hash, TV_HASH_LEN) != 0)
		{
			*problem = psprintf("row tv_seq=%lld differs from what the digest covered (it was rewritten after the digest was taken)",
								(long long) heads[i].seq);
			return -1;
		}
		if (!seen[r - st->rows])
		{
			seen[r - st->rows] = true;
			stack[depth++] = r - st->rows;
		}
	}
	while (depth > 0)
	{
		VRow	   *r = &st->rows[stack[--depth]];
		int			j;

		CHECK_FOR_INTERRUPTS();
		covered++;
		for (j = 0; r->refoff >= 0 && j < r->nrefs; j++)
		{
			VRow	   *p = find_row(st, st->refs[r->refoff + j]);

			if (p != NULL && !seen[p - st->rows])
			{
				seen[p - st->rows] = true;
				stack[depth++] = p - st->rows;
			}
		}
	}
	pfree(seen);
	pfree(stack);
	return covered;
}

PG_FUNCTION_INFO_V1(tv_verify);

/*
 * trialvault.verify(tbl regclass)
 *	 RETURNS (ok, rows_checked, first_bad, bad_rows, heads, head_digest, guard)
 */
Datum
tv_verify(PG_FUNCTION_ARGS)
{
	TvVerdict	v;
	TupleDesc	rettupdesc;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table to verify must not be NULL")));
	if (get_call_result_type(fcinfo, NULL, &rettupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "trialvault: verify() must return a row");

	tv_verify_table(PG_GETARG_OID(0), &v);

	values[0] = BoolGetDatum(v.ok);
	values[1] = Int64GetDatum(v.nrows);
	if (v.first_bad)
		values[2] = CStringGetTextDatum(v.first_bad);
	else if (v.guard)
		values[2] = CStringGetTextDatum(psprintf("table guard: %s", v.guard));
	else
		nulls[2] = true;
	values[3] = Int64GetDatum(v.bad_rows);
	values[4] = Int64GetDatum(v.nheads);
	values[5] = PointerGetDatum(tv_hash_bytea(v.head_digest));
	values[6] = CStringGetTextDatum(v.guard ? v.guard : "intact");

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(rettupdesc),
													  values, nulls)));
}
