# The C-level entry of pgtime.pyx, for the compiled decoder (pgoutput.pyx).

from libc.stdint cimport int64_t


cdef object timestamp(int64_t micros)
