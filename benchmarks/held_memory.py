"""`ial train` with the heap the process holds recorded at the end of every phase.

    python -m benchmarks.held_memory held.json -- --data.dataset voc --data.root ... (ial train options)

Peak RSS moves by tens of MB between identical runs (where the allocator places a phase's
transient tensors), far more than what a data set of a few thousand images could add, so
growth with the data set is read from the memory the process still holds once a phase is over:
glibc's bytes in use (`mallinfo2`: arena chunks in use plus mmapped chunks, after a garbage
collection), which repeat to 0.1 MB between identical runs. Writes {phase: bytes} to the JSON
file; on a C library without mallinfo2 it writes nothing and says so.
"""
from __future__ import annotations

import ctypes
import gc
import json
import sys

from ial_ext.cli import main as ial_main
from ial_ext.train import em

MALLINFO2_FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                    "keepcost")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in MALLINFO2_FIELDS]


def heap_in_use() -> int | None:
    """Bytes glibc's allocator has handed out and not had back, or None without mallinfo2."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _Mallinfo2
    gc.collect()
    info = mallinfo2()
    return info.uordblks + info.hblkhd


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] != "--":
        raise SystemExit("usage: python -m benchmarks.held_memory OUT.json -- <ial train options>")
    output, train_options = argv[0], argv[2:]
    held: dict = {}
    run_phase = em.Loop._run_phase

    def recording_run_phase(loop, name, compute):
        run_phase(loop, name, compute)
        held[f"step {loop.state.step + 1} {name}"] = heap_in_use()

    em.Loop._run_phase = recording_run_phase
    status = ial_main(["train", *train_options])
    if None in held.values():
        print("held_memory: this C library has no mallinfo2; nothing recorded", file=sys.stderr)
        held = {}
    with open(output, "w") as handle:
        json.dump(held, handle, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
