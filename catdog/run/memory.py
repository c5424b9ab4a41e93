"""Keep freed memory in the process instead of handing it back to the kernel after every training step.

glibc's malloc gives each big block (128 KiB and up, at first) its own mapping and returns it to the kernel when
freed, and gives back the top of its heap once more than 128 KiB of it is free. A training step frees and
reallocates the same activation and gradient buffers (8 MiB each for the fast net's first stage, batch 64 in
bf16), so every step the kernel maps them again and faults in and zeroes their pages. Raising both thresholds keeps
them in the heap for the next step: in a two-epoch A/B the fast net's epoch on PetImages-180 went from 24.4 s to
21.2 s on a 2-core CPU with AMX-BF16 (same losses to the last digit), and its bare step from 65 to 56 ms; on another
2-core CPU its step went from 108.6 to 88.7 ms (1.22x, `python -m benchmarks freed_memory`). It does not change what is
learned; the price is resident memory that stays at the step's peak. Not glibc (macOS, musl): nothing to do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
KEEP_FREE_BYTES = 1 << 30  # free memory the heap may keep at its top before trimming: 1 GiB
OWN_MAPPING_BYTES = 1 << 25  # 32 MiB, the largest threshold glibc accepts on 64-bit: bigger blocks still map


def glibc():
    """The C library when it is glibc (it has mallopt and gnu_get_libc_version), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):  # no C library found by that name
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def keep_freed_memory(enabled: bool) -> str:
    """`keep_freed_memory`: raise glibc's trim and mmap thresholds; says what was done, for provenance.json."""
    if not enabled:
        return "off"
    libc = glibc()
    if libc is None:
        return "unavailable (not glibc)"
    ok = libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREE_BYTES) and libc.mallopt(M_MMAP_THRESHOLD, OWN_MAPPING_BYTES)
    if not ok:
        log.warning("keep_freed_memory: glibc's mallopt refused the thresholds; training runs as before")
        return "refused by mallopt"
    return f"on (trim above {KEEP_FREE_BYTES >> 20} MiB, own mapping above {OWN_MAPPING_BYTES >> 20} MiB)"
