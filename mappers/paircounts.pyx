# cython: language_level=3, boundscheck=False, wraparound=False
"""Counts by (customer, event type), the initial snapshot's pairing in memory
(mappers/snapshot_matches.py): an open-addressing hash table of C structs, 24 bytes a slot, a
customer by the two 64-bit halves of its id's 128-bit int and a type by its number. A dict keyed
by (int, str) tuples took ~150 bytes and a tuple, an int and a hash of both per count; here a
count is one probe of a flat array, and the table holds 1.4M pairs in 48 MiB.

A taken count stays in its slot at zero (nothing is ever removed until `drain`), so probing
needs no tombstones."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.list cimport PyList_Append
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.stdint cimport uint32_t, uint64_t

from mappers.uuidbits cimport uuid_halves


cdef struct Slot:
    uint64_t low
    uint64_t high
    uint32_t kind  # the type's number + 1; 0: an empty slot
    uint32_t count


cdef Py_ssize_t _FIRST_CAPACITY = 1024


cdef inline uint64_t _mix(uint64_t low, uint64_t high, uint32_t kind) noexcept:
    """splitmix64's finalizer over the three: ids made by the engine are random, but a sequential
    or time-ordered id must not cluster either."""
    cdef uint64_t h = low ^ (high * <uint64_t>0x9E3779B97F4A7C15ULL) ^ (<uint64_t>kind * <uint64_t>0xC2B2AE3D27D4EB4FULL)
    h = (h ^ (h >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    h = (h ^ (h >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return h ^ (h >> 31)



cdef class PairCounts:
    """Counts keyed by (customer id's int, event type)."""

    cdef Slot* _slots
    cdef Py_ssize_t _mask  # capacity - 1 (a power of two)
    cdef Py_ssize_t _size  # slots in use
    cdef dict _numbers  # type -> its number + 1
    cdef list _types  # number -> type

    def __cinit__(self):
        self._slots = NULL
        self._numbers = {}
        self._types = []
        self._allocate(_FIRST_CAPACITY)

    def __dealloc__(self):
        PyMem_Free(self._slots)

    def __len__(self):
        """The pairs held (taken ones too, until `drain`)."""
        return self._size

    cdef int _allocate(self, Py_ssize_t capacity) except -1:
        cdef Slot* slots = <Slot*>PyMem_Calloc(capacity, sizeof(Slot))
        if slots == NULL:
            raise MemoryError()
        PyMem_Free(self._slots)
        self._slots = slots
        self._mask = capacity - 1
        self._size = 0
        return 0

    cdef uint32_t _number(self, str event_type) except 0:
        number = self._numbers.get(event_type)
        if number is None:
            self._types.append(event_type)
            number = self._numbers[event_type] = len(self._types)
        return number

    cdef Slot* _find(self, uint64_t low, uint64_t high, uint32_t kind) noexcept:
        """The pair's slot, or the empty one where it would go."""
        cdef Py_ssize_t index = <Py_ssize_t>(_mix(low, high, kind) & <uint64_t>self._mask)
        cdef Slot* slot
        while True:
            slot = &self._slots[index]
            if slot.kind == 0 or (slot.low == low and slot.high == high and slot.kind == kind):
                return slot
            index = (index + 1) & self._mask

    cdef int _grow(self) except -1:
        cdef Slot* old = self._slots
        cdef Py_ssize_t index, capacity = self._mask + 1
        cdef Slot* slot
        self._slots = NULL
        try:
            self._allocate(capacity * 2)
        except MemoryError:
            self._slots = old
            raise
        for index in range(capacity):
            if old[index].kind:
                slot = self._find(old[index].low, old[index].high, old[index].kind)
                slot[0] = old[index]
                self._size += 1
        PyMem_Free(old)
        return 0

    def add(self, object customer, str event_type, uint32_t count=1):
        """`count` more events of (customer id's int, type)."""
        cdef uint64_t low, high
        uuid_halves(customer, &low, &high)
        cdef uint32_t kind = self._number(event_type)
        cdef Slot* slot = self._find(low, high, kind)
        if slot.kind == 0:
            if (self._size + 1) * 3 > (self._mask + 1) * 2:  # at most two thirds full
                self._grow()
                slot = self._find(low, high, kind)
            slot.low = low
            slot.high = high
            slot.kind = kind
            slot.count = 0
            self._size += 1
        slot.count += count

    def take(self, object customer, str event_type):
        """One event of the pair, if one is left: True, and it is counted one less."""
        number = self._numbers.get(event_type)
        if number is None:
            return False
        cdef uint64_t low, high
        uuid_halves(customer, &low, &high)
        cdef Slot* slot = self._find(low, high, <uint32_t>number)
        if slot.kind == 0 or slot.count == 0:
            return False
        slot.count -= 1
        return True

    def drain(self):
        """Every pair with a count left, as (their ids: 16 bytes each, big-endian, in one blob;
        [[type, count], ...] in the same order); the table is left empty."""
        cdef Py_ssize_t index, written = 0, held = 0
        cdef Slot* slot
        cdef list values = []
        for index in range(self._mask + 1):
            if self._slots[index].kind and self._slots[index].count:
                held += 1
        ids = PyBytes_FromStringAndSize(NULL, held * 16)
        cdef unsigned char* out = <unsigned char*>PyBytes_AS_STRING(ids)
        cdef int byte
        for index in range(self._mask + 1):
            slot = &self._slots[index]
            if not (slot.kind and slot.count):
                continue
            for byte in range(8):
                out[written * 16 + byte] = <unsigned char>(slot.high >> (56 - 8 * byte))
                out[written * 16 + 8 + byte] = <unsigned char>(slot.low >> (56 - 8 * byte))
            PyList_Append(values, [self._types[slot.kind - 1], slot.count])
            written += 1
        self._allocate(_FIRST_CAPACITY)
        return ids, values
