# The 128 bits of a UUID's int (`uuid.UUID.int`) as two 64-bit halves, read from the int's
# 30-bit digits where the build has them and a 128-bit integer type: the generic
# `_PyLong_AsByteArray` walks the number byte by byte (~300 instructions a UUID, against ~20).
# `va_uuid_halves` returns 0 when that does not apply (a negative int or one past 128 bits,
# another layout of ints), and the caller then asks `_PyLong_AsByteArray`. For the compiled
# modules that read UUIDs: the store's RowBinary (query/rowbinary.pyx), the reference state's
# disk keys (mappers/entitywrite.pyx) and the snapshot pairing's counts (mappers/paircounts.pyx).

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
