# cython: language_level=3, boundscheck=False, wraparound=False
"""Snapshot event ids: uuid5(namespace, `<system_id>/<database>/snapshot/<table>/<key>/<type>`),
one per event of an initial snapshot, so that a snapshot taken again yields the same ids.

Made for every snapshot event (millions), so the name is assembled in one buffer, a UUID key
spelled in place as str(key) spells it, and the UUID built from the digest's first 16 bytes
without uuid5's checks and UUID.__init__. The SHA-1 is hashlib's.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsUnsignedLongLongMask
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

import hashlib
import uuid

cdef extern from "Python.h":
    object _PyLong_FromByteArray(const unsigned char* data, size_t size, int little_endian, int is_signed)
    int PyObject_GenericSetAttr(object target, object name, object value) except -1

cdef object _sha1 = hashlib.sha1
cdef object _UUID = uuid.UUID
cdef object _SAFE_UNKNOWN = uuid.SafeUUID.unknown
cdef object _new_object = object.__new__
cdef const char* _HEX = b"0123456789abcdef"


cdef inline void _hex(char* out, uint64_t value, int digits) noexcept:
    """The last `digits` hex digits of `value`, most significant first."""
    cdef int index
    for index in range(digits - 1, -1, -1):
        out[index] = _HEX[value & 0xF]
        value >>= 4


cdef void _spell_uuid(char* out, uint64_t high, uint64_t low) noexcept:
    """The 36 characters of a UUID's canonical text: 8-4-4-4-12 hex digits."""
    _hex(out, high >> 32, 8)
    out[8] = b"-"
    _hex(out + 9, high >> 16, 4)
    out[13] = b"-"
    _hex(out + 14, high, 4)
    out[18] = b"-"
    _hex(out + 19, low >> 48, 4)
    out[23] = b"-"
    _hex(out + 24, low, 12)


cdef class SnapshotEventIds:
    """The snapshot event ids of one source: `make(table, key, event_type)` is
    uuid.uuid5(namespace, f"{prefix}{table}/{key}/{event_type}")."""

    cdef bytes _head  # the namespace's 16 bytes, then the prefix in UTF-8

    def __init__(self, object namespace, str prefix):
        self._head = namespace.bytes + prefix.encode()

    def make(self, str table, object key, str event_type):
        cdef Py_ssize_t table_size, type_size, key_size = 36
        cdef const char* table_text = PyUnicode_AsUTF8AndSize(table, &table_size)
        cdef const char* type_text = PyUnicode_AsUTF8AndSize(event_type, &type_size)
        cdef const char* key_text = NULL
        cdef object number
        cdef bytes text
        if type(key) is not _UUID:
            text = f"{key}".encode()
            key_text = PyBytes_AS_STRING(text)
            key_size = PyBytes_GET_SIZE(text)
        cdef Py_ssize_t head_size = PyBytes_GET_SIZE(self._head)
        cdef bytes name = PyBytes_FromStringAndSize(NULL, head_size + table_size + key_size + type_size + 2)
        cdef char* out = PyBytes_AS_STRING(name)
        memcpy(out, PyBytes_AS_STRING(self._head), head_size)
        out += head_size
        memcpy(out, table_text, table_size)
        out += table_size
        out[0] = b"/"
        out += 1
        if key_text == NULL:
            number = key.int
            _spell_uuid(out, PyLong_AsUnsignedLongLongMask(number >> 64), PyLong_AsUnsignedLongLongMask(number))
        else:
            memcpy(out, key_text, key_size)
        out += key_size
        out[0] = b"/"
        memcpy(out + 1, type_text, type_size)

        cdef bytes digest = _sha1(name).digest()
        cdef unsigned char made[16]
        memcpy(made, PyBytes_AS_STRING(digest), 16)
        made[6] = (made[6] & 0x0F) | 0x50  # version 5
        made[8] = (made[8] & 0x3F) | 0x80  # the RFC 4122 variant
        cdef object event_id = _new_object(_UUID)
        PyObject_GenericSetAttr(event_id, "int", _PyLong_FromByteArray(made, 16, 0, 0))
        PyObject_GenericSetAttr(event_id, "is_safe", _SAFE_UNKNOWN)
        return event_id


def spelled(object value):
    """str(value); a UUID's text written in C (UUID.__str__ is Python code, ~1 us)."""
    cdef object number
    cdef char out[36]
    if type(value) is _UUID:
        number = value.int
        _spell_uuid(out, PyLong_AsUnsignedLongLongMask(number >> 64), PyLong_AsUnsignedLongLongMask(number))
        return out[:36].decode("ascii")
    return str(value)


def key_text(values):
    """A composite key's text as event ids and the mapper's bookkeeping spell it: its values'
    `spelled` texts joined by '/'."""
    return "/".join([spelled(value) for value in values])
