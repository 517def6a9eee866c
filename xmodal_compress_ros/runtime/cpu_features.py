"""What this CPU can do: the instruction-set flags that decide whether bf16 pays on it.

On the CPU, bf16 networks beat fp32 only where oneDNN can use AMX (Intel Xeon 4th generation and
later): measured on one such CPU, 2.3x as fast with AMX, 0.85-1.03x with the instruction set capped at
AVX512-BF16, 3.3x slower capped at AVX-512 without bf16 and 13x slower capped at AVX2
(docs/runtime.md, "bf16 on the CPU").
"""
from __future__ import annotations

import platform
from typing import List, Optional, Sequence

#: CPU flags (as /proc/cpuinfo names them) that bf16 convolutions use, slowest to fastest.
BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
#: The flag without which bf16 is no faster than fp32 on the CPU.
FAST_BF16_FLAG = 'amx_bf16'


def cpu_flags(wanted: Sequence[str]) -> Optional[List[str]]:
    """Which of ``wanted`` the CPU has, from /proc/cpuinfo; None where that cannot be read."""
    try:
        with open('/proc/cpuinfo') as handle:
            flags = next((line.split(':', 1)[1].split() for line in handle if line.startswith('flags')), None)
    except OSError:
        return None
    return None if flags is None else [flag for flag in wanted if flag in flags]


def fast_bf16() -> Optional[bool]:
    """Whether bf16 networks run faster than fp32 on this CPU (it has AMX); None where it cannot be
    told (not Linux on x86)."""
    if platform.machine().lower() not in ('x86_64', 'amd64'):
        return None
    found = cpu_flags((FAST_BF16_FLAG,))
    return None if found is None else bool(found)
