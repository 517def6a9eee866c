"""runtime/cpu_features.py: the CPU flags that tell whether bf16 networks pay on this CPU."""
import builtins
import io

import pytest

from xmodal_compress_ros.runtime import cpu_features

CPUINFO = 'processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse avx2 {extra}\n\n'


def _fake_cpuinfo(monkeypatch, extra='', machine='x86_64'):
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path == '/proc/cpuinfo':
            return io.StringIO(CPUINFO.format(extra=extra))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, 'open', fake_open)
    monkeypatch.setattr(cpu_features.platform, 'machine', lambda: machine)


@pytest.mark.parametrize('extra, fast', [('', False), ('avx512_bf16', False), ('amx_tile amx_bf16', True),
                                         ('avx512f avx512_vnni', False)])
def test_fast_bf16_needs_amx(monkeypatch, extra, fast):
    _fake_cpuinfo(monkeypatch, extra)
    assert cpu_features.fast_bf16() is fast
    expected = ['avx2'] + (['amx_bf16'] if 'amx_bf16' in extra else [])
    assert cpu_features.cpu_flags(('avx2', 'amx_bf16')) == expected


def test_unknown_where_the_flags_cannot_be_read(monkeypatch):
    _fake_cpuinfo(monkeypatch, 'avx512_bf16', machine='aarch64')
    assert cpu_features.fast_bf16() is None

    def no_cpuinfo(path, *args, **kwargs):
        raise FileNotFoundError(path)

    monkeypatch.setattr(cpu_features.platform, 'machine', lambda: 'x86_64')
    monkeypatch.setattr(builtins, 'open', no_cpuinfo)
    assert cpu_features.cpu_flags(('avx2',)) is None and cpu_features.fast_bf16() is None
