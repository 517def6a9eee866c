"""What this CPU is and can do: its name for benchmark records, the instruction-set flags that
decide whether bf16 pays on it, and the cores this process may run on (the nodes' thread counts).

On the CPU, bf16 networks beat fp32 only where oneDNN can use AMX (Intel Xeon 4th generation and
later): measured on one such CPU, 2.3x as fast with AMX, 0.85-1.03x with the instruction set capped at
AVX512-BF16, 3.3x slower capped at AVX-512 without bf16 and 13x slower capped at AVX2
(docs/runtime.md, "bf16 on the CPU").
"""
from __future__ import annotations

import os
import platform
from typing import List, Optional, Sequence

#: CPU flags (as /proc/cpuinfo names them) that bf16 convolutions use, slowest to fastest.
BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
#: The flag without which bf16 is no faster than fp32 on the CPU.
FAST_BF16_FLAG = 'amx_bf16'


def _cpuinfo_value(key: str) -> Optional[str]:
    """The first ``key : value`` of /proc/cpuinfo; None where it cannot be read (not Linux)."""
    try:
        with open('/proc/cpuinfo') as handle:
            return next((line.split(':', 1)[1].strip() for line in handle if line.startswith(key)), None)
    except OSError:
        return None


def cpu_name() -> str:
    """The CPU's model name, as benchmark results record it."""
    return _cpuinfo_value('model name') or platform.processor() or platform.machine() or 'unknown'


def cpu_flags(wanted: Sequence[str]) -> Optional[List[str]]:
    """Which of ``wanted`` the CPU has, from /proc/cpuinfo; None where that cannot be read."""
    flags = _cpuinfo_value('flags')
    return None if flags is None else [flag for flag in wanted if flag in flags.split()]


def fast_bf16() -> Optional[bool]:
    """Whether bf16 networks run faster than fp32 on this CPU (it has AMX); None where it cannot be
    told (not Linux on x86)."""
    if platform.machine().lower() not in ('x86_64', 'amd64'):
        return None
    found = cpu_flags((FAST_BF16_FLAG,))
    return None if found is None else bool(found)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: taskset and container CPU sets count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity masks (macOS)
        return max(1, os.cpu_count() or 1)


def thread_count(requested: int) -> int:
    """``requested`` threads, or with 0 :func:`usable_cores` (the nodes' ``threads`` parameter)."""
    return requested if requested > 0 else usable_cores()
