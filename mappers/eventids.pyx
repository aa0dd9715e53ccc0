# cython: language_level=3, boundscheck=False, wraparound=False
"""Snapshot event ids: uuid5(namespace, `<system_id>/<database>/snapshot/<table>/<key>/<type>`),
one per event of an initial snapshot, so that a snapshot taken again yields the same ids.

Made for every snapshot event (millions), so the name is assembled in one buffer, a UUID key
spelled in place as str(key) spells it, and the UUID built from the digest's first 16 bytes
without uuid5's checks and UUID.__init__. The SHA-1 (FIPS 180-4) is computed here (`sha1`,
checked against hashlib by the tests): a hashlib object per id made OpenSSL set up a digest
context and look the algorithm up by name, ~5,000 instructions an id around ~2,000 of hashing.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsUnsignedLongLongMask
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

import uuid

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    #define VA_ROL(x, n) ((x) << (n) | (x) >> (32 - (n)))
    /* One SHA-1 round: the next schedule word in place (16 kept), then the state rotated. */
    #define VA_W(i) (w[(i) & 15] = VA_ROL(w[((i) + 13) & 15] ^ w[((i) + 8) & 15] ^ w[((i) + 2) & 15] ^ w[(i) & 15], 1))
    #define VA_ROUND(f, k, word) do { \
            uint32_t t = VA_ROL(a, 5) + (f) + e + (k) + (word); \
            e = d; d = c; c = VA_ROL(b, 30); b = a; a = t; \
        } while (0)

    static void va_sha1_block(uint32_t h[5], const unsigned char* block) {
        uint32_t w[16], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        int i;
        /* each loop unrolled, so that every schedule index is a constant */
        _Pragma("GCC unroll 20")
        for (i = 0; i < 16; i++) {
            w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16
                   | (uint32_t)block[4 * i + 2] << 8 | (uint32_t)block[4 * i + 3];
            VA_ROUND((b & c) | (~b & d), 0x5A827999u, w[i]);
        }
        _Pragma("GCC unroll 20")
        for (; i < 20; i++) VA_ROUND((b & c) | (~b & d), 0x5A827999u, VA_W(i));
        _Pragma("GCC unroll 20")
        for (; i < 40; i++) VA_ROUND(b ^ c ^ d, 0x6ED9EBA1u, VA_W(i));
        _Pragma("GCC unroll 20")
        for (; i < 60; i++) VA_ROUND((b & c) | (b & d) | (c & d), 0x8F1BBCDCu, VA_W(i));
        _Pragma("GCC unroll 20")
        for (; i < 80; i++) VA_ROUND(b ^ c ^ d, 0xCA62C1D6u, VA_W(i));
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }

    /* The SHA-1 digest of `size` bytes at `data`, its 20 bytes into `out`. */
    static void va_sha1(const unsigned char* data, size_t size, unsigned char out[20]) {
        uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
        size_t whole = size - size % 64, rest = size % 64, last;
        unsigned char tail[128];
        uint64_t bits = (uint64_t)size * 8;
        for (size_t at = 0; at < whole; at += 64)
            va_sha1_block(h, data + at);
        memset(tail, 0, sizeof tail);
        memcpy(tail, data + whole, rest);
        tail[rest] = 0x80;  /* then zeros, then the message's length in bits, big-endian */
        last = rest < 56 ? 64 : 128;
        for (int i = 0; i < 8; i++)
            tail[last - 1 - i] = (unsigned char)(bits >> (8 * i));
        va_sha1_block(h, tail);
        if (last == 128)
            va_sha1_block(h, tail + 64);
        for (int i = 0; i < 5; i++) {
            out[4 * i] = (unsigned char)(h[i] >> 24);
            out[4 * i + 1] = (unsigned char)(h[i] >> 16);
            out[4 * i + 2] = (unsigned char)(h[i] >> 8);
            out[4 * i + 3] = (unsigned char)h[i];
        }
    }
    """
    void va_sha1(const unsigned char* data, size_t size, unsigned char* out) noexcept

cdef extern from "Python.h":
    object _PyLong_FromByteArray(const unsigned char* data, size_t size, int little_endian, int is_signed)
    int PyObject_GenericSetAttr(object target, object name, object value) except -1

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

        cdef unsigned char made[20]
        va_sha1(<const unsigned char*>PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), made)
        made[6] = (made[6] & 0x0F) | 0x50  # version 5
        made[8] = (made[8] & 0x3F) | 0x80  # the RFC 4122 variant
        cdef object event_id = _new_object(_UUID)
        PyObject_GenericSetAttr(event_id, "int", _PyLong_FromByteArray(made, 16, 0, 0))
        PyObject_GenericSetAttr(event_id, "is_safe", _SAFE_UNKNOWN)
        return event_id


def sha1(const unsigned char[:] data not None):
    """The SHA-1 digest (20 bytes) of `data`, as the ids are made: hashlib.sha1(data).digest()."""
    cdef unsigned char digest[20]
    va_sha1(&data[0] if data.shape[0] else <const unsigned char*>b"", data.shape[0], digest)
    return digest[:20]


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
