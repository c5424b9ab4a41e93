"""keep_freed_memory, for real in a fresh process: glibc's malloc keeps a freed 8 MiB block (one of the fast net's
first-stage activations at batch 64) in its heap for the next step instead of unmapping it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT

from catdog.run.memory import glibc, keep_freed_memory

pytestmark = pytest.mark.skipif(glibc() is None, reason="glibc's malloc only")

# after malloc and free of 8 MiB: bytes newly in mappings of their own while it is held, and free bytes left in the heap
PROBE = """
import ctypes, json, sys
from catdog.run.memory import glibc, keep_freed_memory

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = glibc()
libc.mallinfo2.restype, libc.malloc.restype = Info, ctypes.c_void_p
said = keep_freed_memory(sys.argv[1] == "on")
before = libc.mallinfo2()
block = libc.malloc(8 << 20)
held = libc.mallinfo2()
libc.free(ctypes.c_void_p(block))
freed = libc.mallinfo2()
print(json.dumps({"said": said, "own_mapping": held.hblkhd - before.hblkhd, "free_in_heap": freed.fordblks}))
"""


def probe(setting: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, setting], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_on_a_freed_block_stays_in_the_heap_for_the_next_step():
    on = probe("on")
    assert on["said"].startswith("on (")
    assert on["own_mapping"] == 0 and on["free_in_heap"] >= 8 << 20


def test_off_glibc_maps_the_block_and_gives_it_back():
    off = probe("off")
    assert off["said"] == "off"
    assert off["own_mapping"] >= 8 << 20 and off["free_in_heap"] < 8 << 20


def test_the_setting_is_said_for_provenance():
    assert keep_freed_memory(False) == "off"
