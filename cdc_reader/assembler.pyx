# cython: language_level=3, boundscheck=False, wraparound=False
"""Turns decoded pgoutput messages into the change envelopes of `cdc_reader.changes`, compiled
with Cython beside the decoder (setup.py; `./dev` rebuilds it when this changes).

Usage (the replication session's loop)::

    decoder, assembler = Decoder(protocol_version), ChangeAssembler()
    for copy_data in xlog_data_messages:
        kind = assembler.feed_payload(decoder, copy_data, XLOG_DATA_HEADER_SIZE, envelopes)
        ...  # envelopes gained TransactionBegin, Change ..., TransactionCommit, in commit order

`feed_payload` decodes one message and appends its envelopes to a list, in one C call per
message; `feed_copy_data` is the replication session's receive loop around it (every XLogData
message the connection has ready, in one call); `ChangeAssembler.feed(message)` does the same for a message decoded already and returns
a (possibly empty) tuple. Begin gives a `TransactionBegin`, each Insert/Update/Delete one
`Change`, a Truncate one `Change` per table, Commit a `TransactionCommit`. Relation messages keep
the relation cache current, so a column added, dropped or retyped mid-stream takes effect from
the next change; Origin, Type and Message produce nothing. Column values are loaded into Python
values by psycopg's loaders (`cdc_reader.loaders`). The decoder refuses streamed and two-phase
messages, so whole transactions arrive in commit order.
"""

from cpython.dict cimport PyDict_SetItem
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.list cimport PyList_Append, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM

from cdc_reader.pgoutput cimport (
    Begin,
    Commit,
    Decoder,
    Delete,
    Insert,
    Message,
    Origin,
    Relation,
    RelationColumn,
    Truncate,
    TupleData,
    Type,
    Update,
)

from psycopg import DataError

from cdc_reader.changes import Change, Op, TransactionBegin, TransactionCommit
from cdc_reader.loaders import RowLoader

cdef tuple _NO_ENVELOPES = ()
cdef frozenset _NO_COLUMNS = frozenset()
cdef object _INSERT = Op.INSERT, _UPDATE = Op.UPDATE, _DELETE = Op.DELETE, _TRUNCATE = Op.TRUNCATE
cdef object _Change = Change, _TransactionBegin = TransactionBegin
cdef object _TransactionCommit = TransactionCommit, _DataError = DataError
# Row layouts kept per relation; a table's rows use few NULL/TOAST patterns, this bounds the rest.
cdef enum:
    MAX_LAYOUTS_PER_RELATION = 256


class AssemblerError(Exception):
    """The message stream does not fit the protocol (e.g. a change outside a transaction)."""


cdef class _RowLayout:
    """How to build a row of one relation from column values sent with one pattern of kinds,
    worked out once per pattern: take the values of the columns rows carry, load them (psycopg's
    loaders, one C call for the row), then pair the columns' names with their values."""

    cdef object loader  # RowLoader of the columns taken
    cdef object load_sequence  # its Transformer's load_sequence
    cdef Py_ssize_t column_count  # of the relation: how many values a row sends
    cdef tuple names  # the columns in the row, in order
    cdef Py_ssize_t* selected  # the index of each one's value among the values sent
    cdef bint every_value  # every value sent is taken, in order (`selected` is the identity)
    cdef tuple binary  # of the values taken, which were sent in binary; () when none
    cdef readonly frozenset unchanged_toast

    def __dealloc__(self):
        PyMem_Free(self.selected)

    cdef dict row(self, tuple values):
        cdef object loaded
        cdef Py_ssize_t index, count = PyTuple_GET_SIZE(self.names)
        if PyTuple_GET_SIZE(values) != self.column_count:
            raise AssemblerError(f"row has {PyTuple_GET_SIZE(values)} values for "
                                 f"{self.column_count} columns")
        cdef tuple taken = values
        if not self.every_value:
            taken = PyTuple_New(count)
            for index in range(count):
                value = <object>PyTuple_GET_ITEM(values, self.selected[index])
                Py_INCREF(value)
                PyTuple_SET_ITEM(taken, index, value)
        try:
            if self.binary:
                raise _DataError  # psycopg's text loaders must not see binary values
            loaded = self.load_sequence(taken)
        except _DataError:
            loaded = self.loader.load_each(taken, self.binary)
        if type(loaded) is not tuple:
            loaded = tuple(loaded)
        cdef dict row = {}
        for index in range(count):
            PyDict_SetItem(row, <object>PyTuple_GET_ITEM(self.names, index),
                           <object>PyTuple_GET_ITEM(loaded, index))
        return row


cdef class _RelationShape:
    """What a Relation message tells us, with the row layouts worked out from it so far."""

    cdef str schema
    cdef str table
    cdef tuple names
    cdef tuple is_key
    cdef tuple carried  # per column: whether rows carry it
    cdef tuple type_oids
    cdef tuple column_types  # (name, type OID) of the columns rows carry: Change.column_types
    cdef object loader  # RowLoader of every column
    cdef dict layouts
    cdef dict key_layouts

    def __init__(self, Relation message, frozenset wanted=None):
        """`wanted`: the only columns rows carry (None: all); a key column is always carried."""
        cdef RelationColumn column
        self.schema = message.namespace or "pg_catalog"
        self.table = message.name
        self.names = tuple([column.name for column in message.columns])
        self.is_key = tuple([column.is_key for column in message.columns])
        self.carried = tuple([wanted is None or column.is_key or column.name in wanted
                              for column in message.columns])
        self.type_oids = tuple([column.type_oid for column in message.columns])
        self.column_types = tuple([pair for pair, carried in zip(zip(self.names, self.type_oids), self.carried)
                                   if carried])
        self.loader = RowLoader(self.type_oids)
        self.layouts = {}
        self.key_layouts = {}

    cdef _RowLayout layout(self, bytes kinds, bint key_only):
        """The layout for rows with these column kinds (b n t u, one byte per column); with
        `key_only`, for the old key of an update or delete (other columns are sent as NULL)."""
        cdef dict layouts = self.key_layouts if key_only else self.layouts
        cdef object layout = layouts.get(kinds)
        if layout is None:
            layout = self._new_layout(kinds, key_only)
            if len(layouts) < MAX_LAYOUTS_PER_RELATION:
                layouts[kinds] = layout
        return <_RowLayout>layout

    cdef _RowLayout _new_layout(self, bytes kinds, bint key_only):
        cdef Py_ssize_t count = len(self.names), index, selected = 0
        if len(kinds) != count:
            raise AssemblerError(
                f"{self.schema}.{self.table}: row has {len(kinds)} columns, the last Relation "
                f"message announced {count}"
            )
        cdef _RowLayout layout = _RowLayout.__new__(_RowLayout)
        layout.selected = <Py_ssize_t*>PyMem_Malloc(max(count, 1) * sizeof(Py_ssize_t))
        if layout.selected == NULL:
            raise MemoryError()
        names, unchanged, type_oids, binary = [], [], [], []
        for index in range(count):
            if not self.carried[index]:
                continue
            if kinds[index] == ord("u"):
                unchanged.append(self.names[index])
            elif self.is_key[index] or not key_only:
                names.append(self.names[index])
                type_oids.append(self.type_oids[index])
                binary.append(kinds[index] == ord("b"))
                layout.selected[selected] = index
                selected += 1
        layout.every_value = selected == count
        layout.loader = self.loader if layout.every_value else RowLoader(type_oids)
        layout.load_sequence = layout.loader.load_sequence
        layout.column_count = count
        layout.names = tuple(names)
        layout.binary = tuple(binary) if any(binary) else ()
        layout.unchanged_toast = frozenset(unchanged) if unchanged else _NO_COLUMNS
        return layout


cdef int _first_byte(object data) except -2:
    """The first byte of a bytes-like object (psycopg hands copy data over as a memoryview); -1
    when it is empty."""
    cdef Py_buffer view
    cdef int first
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    first = (<const unsigned char*>view.buf)[0] if view.len > 0 else -1
    PyBuffer_Release(&view)
    return first


cdef class ChangeAssembler:
    """Feed it every message of one stream, in order; see the module docstring."""

    cdef dict relations  # relation OID -> _RelationShape
    cdef dict columns  # table name -> the only columns its rows carry (None or absent: all)
    cdef bint in_transaction
    cdef object xid
    cdef object commit_lsn
    cdef object commit_time
    cdef Py_ssize_t change_count

    def __init__(self, columns=None):
        """`columns`: per table name, the only columns its rows carry (their keys always), for a
        consumer that reads no others: the rest are neither loaded nor put in the row (None, or a
        table not named: every column)."""
        self.relations = {}
        self.columns = dict(columns or {})
        self.in_transaction = False

    def feed(self, message):
        """The envelopes of one decoded message (`cdc_reader.pgoutput`), possibly none."""
        envelopes = []
        self._feed(message, envelopes)
        return tuple(envelopes)

    def feed_copy_data(self, Decoder decoder, get_copy_data, Py_ssize_t start, list envelopes,
                       Py_ssize_t limit, feedback):
        """The replication session's receive loop: takes the messages `get_copy_data(1)`
        (psycopg's non-blocking PGconn.get_copy_data) has ready and feeds each XLogData's payload
        (from byte `start`) as `feed_payload` does, telling `feedback` (walstream.Feedback) when a
        transaction begins and ends, until none is ready, one of another kind comes, or
        `envelopes` holds `limit`. Returns the (size, data) that stopped it: size 0 when none is
        ready (or at the limit: data None), -1 when the copy ended, a message of another kind
        (a keepalive) otherwise."""
        cdef object received, data
        cdef int kind
        while PyList_GET_SIZE(envelopes) < limit:
            received = get_copy_data(1)
            if <Py_ssize_t>received[0] <= 0:
                return received
            data = received[1]
            if _first_byte(data) != ord("w"):  # XLogData
                return received
            kind = self._feed(decoder.decode_at(data, start), envelopes)
            if kind == ord("B"):
                feedback.transaction_began()
            elif kind == ord("C"):
                feedback.transaction_given(envelopes[PyList_GET_SIZE(envelopes) - 1].end_lsn)
        return (0, None)

    def feed_payload(self, Decoder decoder, payload, Py_ssize_t start, list envelopes):
        """Decode the message in `payload` from byte `start` on (past the XLogData header) and
        append its envelopes to `envelopes`; returns the message kind's byte (ord('B') for a
        Begin, ord('C') for a Commit, whose TransactionCommit is then `envelopes[-1]`)."""
        return self._feed(decoder.decode_at(payload, start), envelopes)

    cdef int _feed(self, object message, list envelopes) except -1:
        cdef type kind = type(message)
        if kind is Insert:
            self._insert(<Insert>message, envelopes)
            return ord("I")
        if kind is Update:
            self._update(<Update>message, envelopes)
            return ord("U")
        if kind is Begin:
            self._begin(<Begin>message, envelopes)
            return ord("B")
        if kind is Commit:
            self._commit(<Commit>message, envelopes)
            return ord("C")
        if kind is Delete:
            self._delete(<Delete>message, envelopes)
            return ord("D")
        if kind is Relation:
            self.relations[(<Relation>message).oid] = _RelationShape(
                message, self.columns.get((<Relation>message).name))
            return ord("R")
        if kind is Truncate:
            for oid in (<Truncate>message).relation_oids:
                PyList_Append(envelopes, self._change(_TRUNCATE, self._shape(oid), None, None,
                                                      _NO_COLUMNS))
            return ord("T")
        if kind is Origin:
            return ord("O")
        if kind is Type:
            return ord("Y")
        if kind is Message:
            return ord("M")
        raise AssemblerError(f"not a message of a whole transaction: {message!r}")

    # -- transaction boundaries ---------------------------------------------------------------
    cdef int _begin(self, Begin message, list envelopes) except -1:
        if self.in_transaction:
            raise AssemblerError(f"Begin of xid {message.xid} inside xid {self.xid}")
        self.in_transaction = True
        self.xid, self.commit_lsn, self.commit_time = message.xid, message.final_lsn, message.commit_time
        self.change_count = 0
        PyList_Append(envelopes, _TransactionBegin(message.xid, message.final_lsn,
                                                   message.commit_time))
        return 0

    cdef int _commit(self, Commit message, list envelopes) except -1:
        self._open_transaction("Commit")
        if message.commit_lsn != self.commit_lsn:
            raise AssemblerError(
                f"Commit LSN {message.commit_lsn} differs from its Begin's {self.commit_lsn}"
            )
        self.in_transaction = False
        PyList_Append(envelopes, _TransactionCommit(
            self.xid, message.commit_lsn, message.end_lsn, message.commit_time, self.change_count))
        return 0

    cdef int _open_transaction(self, str what) except -1:
        if not self.in_transaction:
            raise AssemblerError(f"{what} message outside a transaction (no Begin before it)")
        return 0

    # -- relations ----------------------------------------------------------------------------
    cdef _RelationShape _shape(self, object relation_oid):
        shape = self.relations.get(relation_oid)
        if shape is None:
            raise AssemblerError(
                f"change for relation OID {relation_oid} before its Relation message; feed "
                "every message of the stream to one ChangeAssembler"
            )
        return <_RelationShape>shape

    # -- row changes --------------------------------------------------------------------------
    cdef int _insert(self, Insert message, list envelopes) except -1:
        cdef _RelationShape shape = self._shape(message.relation_oid)
        cdef _RowLayout layout = shape.layout(message.new.kinds, False)
        PyList_Append(envelopes, self._change(_INSERT, shape, None, layout.row(message.new.values),
                                              layout.unchanged_toast))
        return 0

    cdef int _update(self, Update message, list envelopes) except -1:
        cdef _RelationShape shape = self._shape(message.relation_oid)
        before = None if message.old is None else _old_row(shape, message.old_kind, message.old)
        cdef _RowLayout layout = shape.layout(message.new.kinds, False)
        PyList_Append(envelopes, self._change(_UPDATE, shape, before, layout.row(message.new.values),
                                              layout.unchanged_toast))
        return 0

    cdef int _delete(self, Delete message, list envelopes) except -1:
        cdef _RelationShape shape = self._shape(message.relation_oid)
        before = _old_row(shape, message.old_kind, message.old)
        PyList_Append(envelopes, self._change(_DELETE, shape, before, None, _NO_COLUMNS))
        return 0

    cdef object _change(self, object op, _RelationShape shape, object before, object after,
                        frozenset unchanged_toast):
        if not self.in_transaction:
            self._open_transaction(op.name.title())
        position = self.change_count
        self.change_count += 1
        return _Change(op, shape.schema, shape.table, before, after, self.xid, self.commit_lsn,
                       self.commit_time, position, unchanged_toast, shape.column_types)


cdef dict _old_row(_RelationShape shape, object old_kind, TupleData old):
    """The old row image: all columns for 'O', only the replica identity key columns for 'K'
    (the server sends the others as NULL)."""
    return shape.layout(old.kinds, old_kind == "K").row(old.values)
