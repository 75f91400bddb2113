/*-------------------------------------------------------------------------
 *
 * toastscan.c
 *		Reading a table's out-of-line values in storage order, alongside a
 *		sequential scan of the table itself (verify()'s full scan).
 *
 * Detoasting a value looks its chunks up through the TOAST index: a
 * descent of the index and a buffer lookup for every value, and the TOAST
 * relation's pages read in whatever order the values come.  For a table
 * whose rows are mostly large documents that was most of what a full
 * verify cost.  But rows and their values are written together, so the
 * TOAST relation's storage order is nearly the table's: a second
 * sequential scan, of the TOAST relation, kept in step with the table's,
 * finds each value's chunks close ahead, and reads every page once,
 * through a bulk-read ring, with the kernel's read-ahead.
 *
 * Nearly, not exactly: concurrent writers fill different pages, and a
 * value's last, short chunk often goes into free space on an earlier page
 * (once VACUUM has recorded it).  So the chunks read ahead of the row that
 * needs them are kept, up to TV_TOAST_SCAN_AHEAD bytes (the oldest let go
 * first); a value's chunks are looked for up to TV_TOAST_SCAN_LOOK bytes
 * ahead; when none of them is there, for several values in a row, the
 * scan moves on to where the value is stored, if that is further on (never
 * back: a new value may fill free space on a page long passed); and the chunks of a value not found, when
 * others of it were, are looked up one by one through the index.
 *
 * The bytes are the value's bytes or nothing: every chunk is placed once,
 * by its number, and must have the size the TOAST pointer implies.
 * Anything else (a value with no chunk close by, a compressed one, one of
 * more than 1 MB, chunks missing, repeated or malformed, a value of
 * another relation) is left to the usual detoast, which reads it through
 * the index and raises the usual errors.  So the digest is the same either
 * way; only the time differs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/heapam.h"
#include "access/heaptoast.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/toast_internals.h"
#include "catalog/pg_am.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "lib/ilist.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "trialvault.h"

/* Larger values are detoasted the usual way rather than assembled. */
#define TV_TOAST_SCAN_MAX_VALUE	(1024 * 1024)

/* Chunk bytes kept ahead of the rows that need them. */
#define TV_TOAST_SCAN_AHEAD		(16 * 1024 * 1024)

/* How far ahead a value's chunks are looked for, each time one is wanted. */
#define TV_TOAST_SCAN_LOOK		(1024 * 1024)

/* Values in a row with nothing close by before the scan moves on. */
#define TV_TOAST_SCAN_LOST		8

/* Values detoasted the usual way, whose chunks are stepped over. */
#define TV_TOAST_SCAN_DECLINED	64

/* A chunk read before its row needed it. */
typedef struct KeptChunk
{
	struct KeptChunk *next;
	int32		seq;
	int32		len;			/* -1: not a chunk detoasting would take */
	char		data[FLEXIBLE_ARRAY_MEMBER];
} KeptChunk;

/* The chunks kept of one value, oldest value first in the scan's list. */
typedef struct KeptValue
{
	Oid			id;
	KeptChunk  *chunks;
	Size		bytes;
	dlist_node	node;
} KeptValue;

typedef struct KeptEntry
{
	Oid			id;
	char		status;			/* for simplehash */
	KeptValue  *value;
} KeptEntry;

#define SH_PREFIX		kept
#define SH_ELEMENT_TYPE	KeptEntry
#define SH_KEY_TYPE		Oid
#define SH_KEY			id
#define SH_HASH_KEY(tb, key)	murmurhash32(key)
#define SH_EQUAL(tb, a, b)	((a) == (b))
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

struct TvToastScan
{
	Relation	toastrel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	bool		find_start;		/* start where the first value is stored */
	bool		started;
	bool		done;			/* the TOAST relation's scan has ended */
	MemoryContext cxt;			/* the scan, its buffer and kept chunks */
	kept_hash  *kept;
	dlist_head	kept_order;		/* oldest first */
	Size		kept_bytes;
	char	   *buf;			/* the value being assembled */
	Size		bufsize;
	bool	   *have;			/* which of its chunks are in buf */
	int32		havesize;
	Oid			indexoid;		/* the TOAST relation's index */
	Oid			declined[TV_TOAST_SCAN_DECLINED];	/* the last ones */
	uint64		ndeclined;
	uint64		taken;			/* values read from the scan */
	uint64		missed;			/* values left to the usual detoast */
	uint64		patched;		/* values taken with chunks looked up */
	int			lost;			/* values in a row with nothing close by */
};

/*
 * tv_toast_scan_begin: a scan of rel's TOAST relation under snap (the
 * table's scan's snapshot), from its first block (never a synchronized
 * scan, which could start mid-relation), or with find_start (for a scan
 * of part of a heap table) from the block where the first value asked for
 * is stored; NULL if rel has none.
 */
TvToastScan *
tv_toast_scan_begin(Relation rel, Snapshot snap, bool find_start)
{
	TvToastScan *ts;
	MemoryContext cxt;

	if (!OidIsValid(rel->rd_rel->reltoastrelid))
		return NULL;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "trialvault toast scan",
								ALLOCSET_DEFAULT_SIZES);
	ts = MemoryContextAllocZero(cxt, sizeof(TvToastScan));
	ts->cxt = cxt;
	ts->snapshot = snap;
	ts->find_start = find_start;
	ts->toastrel = table_open(rel->rd_rel->reltoastrelid, AccessShareLock);
	ts->scan = table_beginscan_strat(ts->toastrel, snap, 0, NULL, true, false);
	ts->slot = table_slot_create(ts->toastrel, NULL);
	ts->indexoid = toast_get_valid_index(RelationGetRelid(ts->toastrel), AccessShareLock);
	ts->kept = kept_create(cxt, 1024, NULL);
	dlist_init(&ts->kept_order);
	ts->bufsize = VARHDRSZ + TOAST_MAX_CHUNK_SIZE * 4;
	ts->buf = MemoryContextAlloc(cxt, ts->bufsize);
	ts->havesize = 64;
	ts->have = MemoryContextAlloc(cxt, ts->havesize * sizeof(bool));
	return ts;
}

/*
 * tv_toast_scan_end: close the scan and add its counts to *taken (values
 * read from it), *patched (of those, values with chunks looked up through
 * the index) and *missed (values left to the usual detoast).
 */
void
tv_toast_scan_end(TvToastScan *ts, uint64 *taken, uint64 *patched, uint64 *missed)
{
	if (ts == NULL)
		return;
	*taken += ts->taken;
	*patched += ts->patched;
	*missed += ts->missed;
	ExecDropSingleTupleTableSlot(ts->slot);
	table_endscan(ts->scan);
	table_close(ts->toastrel, AccessShareLock);
	MemoryContextDelete(ts->cxt);
}

static void
forget_value(TvToastScan *ts, KeptValue *v)
{
	KeptChunk  *c = v->chunks;

	while (c != NULL)
	{
		KeptChunk  *next = c->next;

		pfree(c);
		c = next;
	}
	ts->kept_bytes -= v->bytes;
	dlist_delete(&v->node);
	kept_delete(ts->kept, v->id);
	pfree(v);
}

/*
 * Move the scan forward to the block holding the first chunk of value id,
 * found through the TOAST index: when the values a scan of part of the
 * table wants start mid-relation, or are stored far ahead (the space
 * between them is not read at all).  Never back: a value stored behind the
 * scan is detoasted the usual way.  False if the scan was not moved.
 */
static bool
jump_to_value(TvToastScan *ts, Oid id)
{
	HeapScanDesc hscan = (HeapScanDesc) ts->scan;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	BlockNumber blk = InvalidBlockNumber;
	BlockNumber nblocks;

	if (ts->toastrel->rd_rel->relam != HEAP_TABLE_AM_OID)
		return false;
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(id));
	scan = systable_beginscan(ts->toastrel, ts->indexoid, true, ts->snapshot, 1, &key);
	if ((tup = systable_getnext(scan)) != NULL)
		blk = ItemPointerGetBlockNumber(&tup->t_self);
	systable_endscan(scan);
	if (blk == InvalidBlockNumber || ts->done || blk >= hscan->rs_nblocks ||
		(hscan->rs_inited && blk <= hscan->rs_cblock))
		return false;
	table_rescan(ts->scan, NULL);
	nblocks = hscan->rs_nblocks;	/* counted again: never fewer */
	heap_setscanlimits(ts->scan, blk, nblocks - blk);
	return true;
}

/* Keep a chunk read ahead of its row; let the oldest go past the limit. */
static void
keep_chunk(TvToastScan *ts, Oid id, int32 seq, const char *data, int32 len)
{
	KeptEntry  *e;
	bool		found;
	KeptChunk  *c;
	Size		bytes = offsetof(KeptChunk, data) + Max(len, 0);

	while (ts->kept_bytes + bytes > TV_TOAST_SCAN_AHEAD &&
		   !dlist_is_empty(&ts->kept_order))
		forget_value(ts, dlist_head_element(KeptValue, node, &ts->kept_order));
	e = kept_insert(ts->kept, id, &found);
	if (!found)
	{
		e->value = MemoryContextAlloc(ts->cxt, sizeof(KeptValue));
		e->value->id = id;
		e->value->chunks = NULL;
		e->value->bytes = 0;
		dlist_push_tail(&ts->kept_order, &e->value->node);
	}
	c = MemoryContextAlloc(ts->cxt, bytes);
	c->seq = seq;
	c->len = len;
	if (len > 0)
		memcpy(c->data, data, len);
	c->next = e->value->chunks;
	e->value->chunks = c;
	e->value->bytes += bytes;
	ts->kept_bytes += bytes;
}

/*
 * Put chunk seq of the value being assembled into the buffer; false if
 * detoasting would not take it (out of range, repeated, the wrong size).
 */
static bool
place_chunk(TvToastScan *ts, int32 nchunks, int32 size, int32 seq,
			const char *data, int32 len)
{
	int32		expect;

	if (seq < 0 || seq >= nchunks || ts->have[seq])
		return false;
	expect = (seq < nchunks - 1) ? TOAST_MAX_CHUNK_SIZE :
		size - (nchunks - 1) * TOAST_MAX_CHUNK_SIZE;
	if (len != expect)
		return false;
	memcpy(VARDATA(ts->buf) + seq * TOAST_MAX_CHUNK_SIZE, data, len);
	ts->have[seq] = true;
	return true;
}

static bool
declined(TvToastScan *ts, Oid id)
{
	int			i;
	int			n = (int) Min(ts->ndeclined, TV_TOAST_SCAN_DECLINED);

	for (i = 0; i < n; i++)
		if (ts->declined[i] == id)
			return true;
	return false;
}

/*
 * Chunk seq of value id, through the TOAST index (as detoasting finds it),
 * into the buffer; false if there is not exactly one that fits.
 */
static bool
fetch_chunk(TvToastScan *ts, Oid id, int32 nchunks, int32 size, int32 seq)
{
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;
	int			n = 0;
	bool		ok = true;

	ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(id));
	ScanKeyInit(&key[1], 2, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(seq));
	scan = systable_beginscan(ts->toastrel, ts->indexoid, true, ts->snapshot, 2, key);
	while (ok && (tup = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Pointer		chunk = DatumGetPointer(heap_getattr(tup, 3, RelationGetDescr(ts->toastrel), &isnull));

		ok = (++n == 1 && !isnull && !VARATT_IS_EXTERNAL(chunk) && !VARATT_IS_COMPRESSED(chunk) &&
			  place_chunk(ts, nchunks, size, seq, VARDATA_ANY(chunk), VARSIZE_ANY_EXHDR(chunk)));
	}
	systable_endscan(scan);
	return ok && n == 1;
}

/*
 * Read on through the scan for the chunks of value id not placed yet
 * (*found so far), up to TV_TOAST_SCAN_LOOK bytes of other values' chunks,
 * which are kept; *ok false if a chunk of it does not fit.
 */
static void
read_ahead_for(TvToastScan *ts, Oid valueid, int32 nchunks, int32 size,
			   int32 *found, bool *ok)
{
	Size		ahead = 0;

	while (*ok && *found < nchunks && !ts->done && ahead <= TV_TOAST_SCAN_LOOK)
	{
		bool		isnull;
		Datum		d;
		Oid			id;
		int32		seq;
		Pointer		chunk;
		const char *data = NULL;
		int32		len = -1;

		if (!table_scan_getnextslot(ts->scan, ForwardScanDirection, ts->slot))
		{
			ts->done = true;
			break;
		}
		d = slot_getattr(ts->slot, 1, &isnull);
		id = isnull ? InvalidOid : DatumGetObjectId(d);
		d = slot_getattr(ts->slot, 2, &isnull);
		seq = isnull ? -1 : DatumGetInt32(d);
		d = slot_getattr(ts->slot, 3, &isnull);
		chunk = isnull ? NULL : DatumGetPointer(d);
		/* Only what detoasting takes: a plain or short-header varlena. */
		if (chunk != NULL && !VARATT_IS_EXTERNAL(chunk) && !VARATT_IS_COMPRESSED(chunk))
		{
			data = VARDATA_ANY(chunk);
			len = VARSIZE_ANY_EXHDR(chunk);
		}
		if (id == valueid)
		{
			*ok = place_chunk(ts, nchunks, size, seq, data, len);
			(*found)++;
		}
		else if (!declined(ts, id))
		{
			keep_chunk(ts, id, seq, data, len);
			ahead += Max(len, 0);
		}
	}
}

/*
 * tv_toast_scan_value: the value an on-disk TOAST pointer of the scanned
 * table refers to, as detoasting would return it, if its chunks are kept
 * or close ahead in the TOAST relation's scan; otherwise NULL, and the
 * caller detoasts it.  The result lives in the scan's buffer until the
 * next call.
 */
struct varlena *
tv_toast_scan_value(TvToastScan *ts, struct varlena *attr)
{
	struct varatt_external ptr;
	int32		size;
	int32		nchunks;
	int32		found = 0;
	int32		seq;
	bool		jumped = false;
	KeptEntry  *e;
	MemoryContext old;
	bool		ok = true;

	if (ts == NULL || !VARATT_IS_EXTERNAL_ONDISK(attr))
		return NULL;
	VARATT_EXTERNAL_GET_POINTER(ptr, attr);
	if (ptr.va_toastrelid != RelationGetRelid(ts->toastrel))
	{
		ts->missed++;
		return NULL;
	}
	size = VARATT_EXTERNAL_GET_EXTSIZE(ptr);
	/* (A compressed value is stored in fewer bytes than its raw size.) */
	if (size <= 0 || size > TV_TOAST_SCAN_MAX_VALUE ||
		ptr.va_rawsize != size + VARHDRSZ)
	{
		/* Its chunks are not wanted: step over them, do not keep them. */
		ts->declined[ts->ndeclined++ % TV_TOAST_SCAN_DECLINED] = ptr.va_valueid;
		ts->missed++;
		return NULL;
	}

	nchunks = (size - 1) / TOAST_MAX_CHUNK_SIZE + 1;
	if (ts->bufsize < (Size) (VARHDRSZ + size))
	{
		pfree(ts->buf);
		ts->bufsize = VARHDRSZ + size;
		ts->buf = MemoryContextAlloc(ts->cxt, ts->bufsize);
	}
	if (ts->havesize < nchunks)
	{
		pfree(ts->have);
		ts->havesize = nchunks;
		ts->have = MemoryContextAlloc(ts->cxt, nchunks * sizeof(bool));
	}
	memset(ts->have, 0, nchunks * sizeof(bool));

	/* The chunks read ahead already, then on through the scan. */
	e = kept_lookup(ts->kept, ptr.va_valueid);
	if (e != NULL)
	{
		KeptChunk  *c;

		for (c = e->value->chunks; c != NULL && ok; c = c->next)
		{
			ok = place_chunk(ts, nchunks, size, c->seq, c->data, c->len);
			found++;
		}
		forget_value(ts, e->value);
	}
	old = MemoryContextSwitchTo(ts->cxt);
	if (!ts->started)
	{
		ts->started = true;
		if (ts->find_start)
			(void) jump_to_value(ts, ptr.va_valueid);
	}
	for (;;)
	{
		read_ahead_for(ts, ptr.va_valueid, nchunks, size, &found, &ok);
		if (!ok || found > 0)
		{
			ts->lost = 0;
			break;
		}

		/*
		 * Nothing of it close by.  One row out of order is no reason to
		 * leave the rows around it behind; several in a row are: the
		 * values are stored further on.
		 */
		if (jumped || ++ts->lost < TV_TOAST_SCAN_LOST ||
			!jump_to_value(ts, ptr.va_valueid))
			break;
		jumped = true;
	}

	/*
	 * Still nothing of it: it is stored behind.  Some of it: the rest
	 * (typically a short last chunk, put into free space on an earlier
	 * page) is looked up chunk by chunk.
	 */
	if (ok && found == 0)
		ok = false;
	if (ok && found < nchunks)
		ts->patched++;
	for (seq = 0; ok && found < nchunks && seq < nchunks; seq++)
		if (!ts->have[seq])
			ok = fetch_chunk(ts, ptr.va_valueid, nchunks, size, seq);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		ts->missed++;
		return NULL;
	}
	SET_VARSIZE(ts->buf, VARHDRSZ + size);
	ts->taken++;
	return (struct varlena *) ts->buf;
}
