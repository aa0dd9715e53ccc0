# The 128 bits of a UUID's int (`uuid.UUID.int`) as two 64-bit halves (`uuid_halves`), read
# from the int's 30-bit digits where the build has them and a 128-bit integer type: the generic
# `_PyLong_AsByteArray` walks the number byte by byte (~300 instructions a UUID, against ~20),
# and is left to the ints the digits do not serve (another layout of ints; a negative int or
# one past 128 bits, which it refuses with OverflowError). For the compiled modules that read
# UUIDs: the store's RowBinary (query/rowbinary.pyx), the reference state's disk keys
# (mappers/entitywrite.pyx) and the snapshot pairing's counts (mappers/paircounts.pyx).

from cpython.object cimport PyObject
from libc.stdint cimport uint64_t

cdef extern from *:
    """
    #if defined(__SIZEOF_INT128__) && PyLong_SHIFT == 30
    static int va_uuid_halves(PyObject* number, uint64_t* low, uint64_t* high) {
    #if PY_VERSION_HEX >= 0x030C0000
        uintptr_t tag = ((PyLongObject*)number)->long_value.lv_tag;
        Py_ssize_t count = (Py_ssize_t)(tag >> 3);
        const digit* digits = ((PyLongObject*)number)->long_value.ob_digit;
        if ((tag & 3) == 2) return 0;  /* negative */
    #else
        Py_ssize_t count = Py_SIZE(number);
        const digit* digits = ((PyLongObject*)number)->ob_digit;
        if (count < 0) return 0;
    #endif
        unsigned __int128 value = 0;
        if (count > 5 || (count == 5 && (digits[4] >> 8) != 0)) return 0;  /* past 128 bits */
        for (Py_ssize_t index = count - 1; index >= 0; index--)
            value = (value << 30) | digits[index];
        *low = (uint64_t)value;
        *high = (uint64_t)(value >> 64);
        return 1;
    }
    #else
    static int va_uuid_halves(PyObject* number, uint64_t* low, uint64_t* high) { return 0; }
    #endif
    """
    int va_uuid_halves(PyObject* number, uint64_t* low, uint64_t* high) noexcept

cdef extern from "Python.h":
    ctypedef struct _PyLongObject "PyLongObject":
        pass
    int _PyLong_AsByteArray(_PyLongObject* number, unsigned char* bytes, size_t n, int little_endian,
                            int is_signed) except -1


cdef inline int uuid_halves(object number, uint64_t* low, uint64_t* high) except -1:
    """`number` (a UUID's int) as its low and high 64 bits."""
    cdef unsigned char little[16]
    cdef int index
    if va_uuid_halves(<PyObject*>number, low, high):
        return 0
    _PyLong_AsByteArray(<_PyLongObject*>number, little, 16, 1, 0)
    low[0] = high[0] = 0
    for index in range(7, -1, -1):
        low[0] = low[0] << 8 | little[index]
        high[0] = high[0] << 8 | little[index + 8]
    return 0
