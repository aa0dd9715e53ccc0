# cython: language_level=3, boundscheck=False, wraparound=False
"""The reference state's write loop, compiled: the SQLite parameters of a batch of changed rows.

`ReferenceState._write` runs it for every row a commit, an eviction or a batch of the snapshot's
`add`s writes: the row's key as the `entity` table holds it (`disk_key`), its MessagePack encoding (the row
codec's known layouts, checked and encoded here in one pass over the dict; a row no known layout
fits goes through `RowCodec.encode`, which learns a layout or pickles), laid out as the writes'
statements take them (`mappers/entitywrites.py`), and what the encoded level keeps.
`encode_known` is also the row codec's own check and encoding.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Contains, PyDict_GetItem, PyDict_Next, PyDict_Size
from cpython.list cimport PyList_Append
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.set cimport PySet_Contains
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

from mappers.uuidbits cimport uuid_halves

import uuid

import msgspec

cdef extern from "Python.h":
    object _PyLong_FromByteArray(const unsigned char* bytes, size_t n, int little_endian, int is_signed)

cdef object _UUID = uuid.UUID
cdef tuple _ENCODE_ERRORS = (OverflowError, ValueError, TypeError, msgspec.EncodeError)

# A blob is bound as a bytearray: the sqlite3 module binds one directly, where a bytes
# parameter first goes through its adapter lookup (~0.4 us in CPython 3.11, which formats and
# drops an AttributeError each time), more than the copy costs (~0.1 us for a key).
blob_parameter = bytearray


cpdef object disk_key(object key):
    """How `entity.key` holds a row key (as `state.normal_key` gives it): a UUID as its 16 bytes,
    anything else as text. (The column's TEXT affinity leaves blobs as they are.)"""
    if type(key) is _UUID:
        return blob_parameter(key.int.to_bytes(16))
    return str(key)


def newest_that_fit(rows, object uuid_key, dict held, Py_ssize_t room, Py_ssize_t overhead):
    """For the encoded level's warm-up (`EncodedRows.store_oldest_rows`): of `entity` rows
    (table, key, encoding), newest first, the (encoded level's key, encoding) pairs of those
    keyed by a UUID (`disk_key`'s 16 bytes) that `held` does not hold, while each one's cost (its
    encoding's length plus `overhead`) fits `room`; and the room left. `uuid_key(table, number)`
    is the encoded level's key of a UUID given by its int."""
    cdef list kept = []
    cdef dict bases = {}
    cdef object table, key, blob, base, packed
    cdef PyObject* found
    cdef Py_ssize_t cost
    for table, key, blob in rows:
        if type(key) is not bytes:
            continue
        cost = len(blob) + overhead
        if cost > room:
            break
        found = PyDict_GetItem(bases, table)
        if found == NULL:
            base = bases[table] = uuid_key(table, 0)
        else:
            base = <object>found
        if PyBytes_GET_SIZE(key) == 16:
            packed = base | _PyLong_FromByteArray(<const unsigned char*>PyBytes_AS_STRING(key), 16, 0, 0)
        else:
            packed = base | int.from_bytes(key, "big")
        if not PyDict_Contains(held, packed):
            PyList_Append(kept, (packed, blob))
            room -= cost
    return kept, room


cpdef object encode_known(dict layouts, object encode, object table, dict row):
    """The row's encoding by its known layout (`RowCodec`), or None: no layout known for its
    columns yet, none fits (pickled), a value not of its column's types, or a value MessagePack
    refuses."""
    cdef object layout = _layout_of(layouts, table, _columns_of(row))
    return None if layout is None else _encode_by(<tuple>layout, encode, row)


cdef tuple _columns_of(dict row):
    cdef Py_ssize_t position = 0, index = 0
    cdef PyObject* column
    cdef PyObject* value
    cdef tuple columns = PyTuple_New(PyDict_Size(row))
    while PyDict_Next(row, &position, &column, &value):
        Py_INCREF(<object>column)
        PyTuple_SET_ITEM(columns, index, <object>column)
        index += 1
    return columns


cdef object _layout_of(dict layouts, object table, tuple columns):
    """The known layout of these columns of `table` (a (tag, accepted types) tuple), or None."""
    cdef PyObject* found = PyDict_GetItem(layouts, (table, columns))
    return None if found == NULL else <object>found


cdef bint _same_columns(tuple columns, dict row):
    """Whether the row's columns are `columns`' very strings, in order (the rows of one table
    share their column names' objects: the mapper's constants, the reader's relation)."""
    cdef Py_ssize_t position = 0, index = 0
    cdef PyObject* column
    cdef PyObject* value
    if PyDict_Size(row) != PyTuple_GET_SIZE(columns):
        return False
    while PyDict_Next(row, &position, &column, &value):
        if column != PyTuple_GET_ITEM(columns, index):
            return False
        index += 1
    return True


cdef object _encode_by(tuple layout, object encode, dict row):
    cdef Py_ssize_t size = PyDict_Size(row), position = 0, index = 0
    cdef PyObject* column
    cdef PyObject* value
    cdef tuple accepted = <tuple>PyTuple_GET_ITEM(layout, 1)
    cdef tuple values = PyTuple_New(size + 1)
    cdef object tag = <object>PyTuple_GET_ITEM(layout, 0)
    Py_INCREF(tag)
    PyTuple_SET_ITEM(values, 0, tag)
    cdef object item
    while PyDict_Next(row, &position, &column, &value):
        if not PySet_Contains(<object>PyTuple_GET_ITEM(accepted, index), type(<object>value)):
            return None
        # a UUID as the 16 bytes MessagePack carries it (`uuid_format="bytes"` writes the same
        # bin value, reading the int byte by byte, ~4x the instructions)
        item = _uuid_bytes(<object>value) if type(<object>value) is _UUID else <object>value
        Py_INCREF(item)
        PyTuple_SET_ITEM(values, index + 1, item)
        index += 1
    try:
        return encode(values)
    except _ENCODE_ERRORS:  # an int past 64 bits, a lone surrogate in a string
        return None


cdef inline void _append(bytearray data, const char* source, Py_ssize_t size) except *:
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(data)
    PyByteArray_Resize(data, start + size)
    memcpy(PyByteArray_AS_STRING(data) + start, source, size)


cdef inline void _put_big_endian(char* out, uint64_t value) noexcept:
    cdef int index
    for index in range(7, -1, -1):
        out[index] = <char>(value & 0xFF)
        value >>= 8


cdef inline void _spell_uuid(object value, char* spelled) except *:
    """A UUID's 16 bytes (`UUID.bytes`) into `spelled`."""
    cdef uint64_t low, high
    uuid_halves(value.int, &low, &high)
    _put_big_endian(spelled, high)
    _put_big_endian(spelled + 8, low)


cdef object _uuid_bytes(object value):
    cdef char spelled[16]
    _spell_uuid(value, spelled)
    return PyBytes_FromStringAndSize(spelled, 16)


cdef void _append_disk_key(bytearray data, object key) except *:
    """`disk_key`'s 16 bytes of a UUID key, appended."""
    cdef char spelled[16]
    _spell_uuid(key, spelled)
    _append(data, spelled, 16)


def entity_parameters(entries, dict layouts, object encode, object encode_row, object packed_key,
                      dict packed_bases, bint packing, object absent_blob):
    """For (table, key, row, keep) entries (row None: deleted), what `mappers/entitywrites.py`
    writes and what the encoded level keeps: `spans` and `data`, the UUID-keyed upserts as one
    statement's parameters (each row's 16 key bytes then its encoding, appended to `data`, and a
    (table, where its key starts, its encoding's length) span, counted from 1 as SQLite's substr
    counts); `upserts`, the other keys' (table, key, blob) parameters; `deletes`, the (table, key) ones; and
    `kept`, the (packed key, encoding) pairs the encoded level keeps (those with `keep`, when
    `packing`). `layouts` and `encode`: the row codec's (`RowCodec.fast_path`); `encode_row`:
    `RowCodec.encode`, for the rows they do not fit; `packed_key(table, key)`: the encoded level's
    key of a row, which for a UUID key of a table in `packed_bases` (table -> its base) is worked
    out here, as `EncodedRows.key` does; `absent_blob`: what the encoded level holds for a deleted
    row."""
    cdef list spans = [], upserts = [], deletes = [], kept = []
    cdef bytearray data = bytearray()
    cdef object table, key, row, keep, blob, layout
    # the last layout found, with its table and columns: the next row of that table has the
    # same columns, as a rule, so its layout is known without building the lookup's key
    cdef object last_table = None, last_layout = None
    cdef tuple last_columns = (), columns
    cdef PyObject* base
    for table, key, row, keep in entries:
        if row is None:
            PyList_Append(deletes, (table, disk_key(key)))
            blob = absent_blob
        else:
            blob = None
            if type(row) is dict:
                if table is last_table and _same_columns(last_columns, <dict>row):
                    layout = last_layout
                else:
                    columns = _columns_of(<dict>row)
                    layout = _layout_of(layouts, table, columns)
                    if layout is not None:
                        last_table, last_layout, last_columns = table, layout, columns
                if layout is not None:
                    blob = _encode_by(<tuple>layout, encode, <dict>row)
            if blob is None:
                blob = encode_row(table, row)
            if type(key) is _UUID:
                PyList_Append(spans, (table, PyByteArray_GET_SIZE(data) + 1, PyBytes_GET_SIZE(blob)))
                _append_disk_key(data, key)
                _append(data, PyBytes_AS_STRING(blob), PyBytes_GET_SIZE(blob))
            else:
                PyList_Append(upserts, (table, str(key), blob_parameter(blob)))
        if keep and packing:
            base = PyDict_GetItem(packed_bases, table) if type(key) is _UUID else NULL
            PyList_Append(kept, ((<object>base) | key.int if base != NULL else packed_key(table, key), blob))
    return spans, data, upserts, deletes, kept
