"""Column layout of the book store's arrays and of event batches.

Kernels in nopython mode take only arrays and scalars, so the store keeps its per-book
state in one int64 matrix and one float64 matrix whose columns are named here. Event
batches are one int64 matrix of the same kind. The constants are plain ints so numba
folds them into the compiled code.
"""

from __future__ import annotations

# --- enum values the kernels compare with -------------------------------------------------
# Defined once here as plain ints (numba folds module globals into the compiled code);
# tests/monitor/test_book_constants.py checks that they equal the Python enums.
KIND_SNAPSHOT = 1  # monitor.domain.EventKind.SNAPSHOT
KIND_DELTA = 2  # monitor.domain.EventKind.DELTA
RULE_CONTIGUOUS = 1  # monitor.domain.SeqRule.CONTIGUOUS (Binance spot U/u, Bybit u)
RULE_PREVIOUS = 2  # monitor.domain.SeqRule.PREVIOUS (Binance USD-M pu)
RULE_CHAIN = 3  # monitor.domain.SeqRule.CHAIN (OKX seqId/prevSeqId, Deribit change ids)
RULE_NONE = 4  # monitor.domain.SeqRule.NONE (no ids)
STATE_EMPTY = 0  # monitor.domain.BookState.EMPTY
STATE_SYNCING = 1  # monitor.domain.BookState.SYNCING
STATE_LIVE = 2  # monitor.domain.BookState.LIVE
CHECK_NONE = 0  # feeds.contract.Checksum.NONE
CHECK_OKX = 1  # feeds.contract.Checksum.OKX
CHECK_KRAKEN = 2  # feeds.contract.Checksum.KRAKEN

# --- per-book integer state: BookStore.istate[book, col] ---------------------------------
S_STATE = 0  # STATE_*: EMPTY, SYNCING, LIVE
S_LAST_ID = 1  # last sequence id applied (snapshot lastUpdateId, then delta u)
S_N_BID = 2  # levels held per side
S_N_ASK = 3
S_RULE = 4  # RULE_*
S_PRICE_DEC = 5  # decimals of one price unit
S_CAPACITY = 6  # levels per side this book may hold (<= store capacity)
S_FLAGS = 7  # F_* bits below
S_COMPLETE_BID = 8  # book known complete for keys >= this (key = +price for bids)
S_COMPLETE_ASK = 9  # book known complete for keys >= this (key = -price for asks)
S_MESSAGES = 10  # deltas and snapshots applied
S_GAPS = 11  # sequence gaps detected
S_DROPPED = 12  # levels dropped because the book was full
S_PX_WIRE_DEC = 13  # decimals the venue writes prices with (for exact re-formatting)
S_QTY_WIRE_DEC = 14  # decimals the venue writes quantities with
S_TS_EVENT = 15  # venue time of the last event applied (ns)
S_TS_RECV = 16  # receive time of the last event applied (ns)
S_PX_INDEX = 17  # position of the price inside one level array (Binance 0)
S_QTY_INDEX = 18  # position of the quantity inside one level array (Binance 1)
S_CROSSED = 19  # snapshots or deltas that left the book crossed
S_STALE = 20  # deltas dropped as older than the book
S_CHECKSUM = 21  # CHECK_*: how the venue's checksum is computed
S_QTY_PREC = 22  # decimals of the venue's sizes for checksums (0: as written on the wire)
S_CHECK_OK = 23  # checksums verified
S_CHECK_FAIL = 24  # checksum mismatches (each threw the book away)
N_ISTATE = 25

# --- per-book float state: BookStore.fstate[book, col] -----------------------------------
F_CONTRACT_SIZE = 0  # venue quantity x this = base units (inverse: / price too)
F_INVERSE = 1  # 1.0: sizes are quote amounts (base = size x contract size / price)
N_FSTATE = 2

# --- S_FLAGS bits -------------------------------------------------------------------------
FLAG_TRUNCATED = 1  # levels were dropped for capacity since the last snapshot
FLAG_CROSSED = 2  # best bid >= best ask
FLAG_PARSE_ERROR = 4  # a level array did not parse: the book was thrown away
FLAG_WINDOW = 8  # the venue keeps this book's top-N window (Bybit, Kraken, OKX): the book is
#                  known complete down to its deepest held level after every event

# --- event batch rows: batch.meta[i, col] ------------------------------------------------
E_BOOK = 0  # book id in the store
E_KIND = 1  # KIND_SNAPSHOT or KIND_DELTA
E_FIRST = 2  # first sequence id (Binance U); snapshot: -1
E_LAST = 3  # last sequence id (Binance u); snapshot: lastUpdateId
E_PREV = 4  # previous event's last id (Binance USD-M pu), -1 if none
E_BID_LEN = 5  # bytes of the raw bids level array; the event's arrays follow the previous
E_ASK_LEN = 6  # event's in the batch buffer (bids, then asks), so offsets are running sums
E_TS_EVENT = 7
E_TS_RECV = 8
E_LIMIT = 9  # snapshot: levels requested per side (0 = full book)
E_STATUS = 10  # written by the kernel: R_* below
E_BEST_BID = 11  # written by the kernel: best bid (price units) after the event, or -1
E_BEST_ASK = 12  # written by the kernel: best ask (price units) after the event, or -1
E_CHECKSUM = 13  # the venue's checksum of the book after this event
E_HAS_CHECKSUM = 14  # 1: verify E_CHECKSUM after applying (0: the event carries none)
N_EVENT = 15

# --- per-event results -------------------------------------------------------------------
R_APPLIED = 1  # applied to a valid book
R_STALE = 2  # older than the book (u below the last id): dropped, harmless
R_BUFFER = 3  # book has no snapshot yet: the caller keeps the event for after the snapshot
R_GAP = 4  # did not chain: the book was thrown away, caller resyncs (and keeps the event)
R_PARSE_ERROR = 5  # level arrays malformed: the book was thrown away, caller resyncs
R_SNAPSHOT = 6  # snapshot applied, book waits for the first bridging delta
R_SNAPSHOT_STALE = 7  # snapshot older than buffered deltas: caller fetches a newer one
R_OFF_GRID = 8  # a price finer than the instrument's tick: book thrown away
R_CROSSED = 9  # the event left the book crossed: thrown away, caller resyncs
R_TOP_UNKNOWN = 10  # deletes emptied the known part of a side cut by capacity or snapshot
#                     depth: its true top is unknown, the book is thrown away and resynced

R_CHECKSUM = 11  # the book after the event does not match the venue's checksum: resync

KEY_MIN = -(2**62)  # "complete everywhere"
