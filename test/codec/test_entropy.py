"""Integer probability tables and the rANS coder (both engines): exactness, determinism, robustness."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal_compress_ros.codec import rans_kernels
from xmodal_compress_ros.codec.entropy import (
    ENGINES, MAX_SUBSTREAMS, MAX_TABLE_LENGTH, ConstrictionAnsCoder, PmfTable, available_coders,
    clamp_symbols, default_scale_table, gaussian_table, get_coder, quantize_pmf, split_substreams,
    table_from_pmfs,
)
from xmodal_compress_ros.errors import ModelFileError, PacketError


def random_table(rng, rows=12, max_length=300, precision=16):
    lengths = rng.integers(1, max_length + 1, rows)
    pmf = rng.random((rows, int(lengths.max()))) ** 4
    return PmfTable(quantize_pmf(pmf, lengths, precision), lengths, rng.integers(-200, 200, rows), precision)


def random_symbols(rng, table, size):
    indexes = rng.integers(0, table.num_rows, size).astype(np.int32)
    columns = np.floor(rng.random(size) * table.lengths[indexes]).astype(np.int64)
    return (columns + table.offsets[indexes]).astype(np.int32), indexes


#: The engines that run here; numba's is compared with the reference, constriction's, wherever it runs.
RUNNABLE_ENGINES = ('constriction', 'numba') if rans_kernels.available() else ('constriction',)
needs_numba = pytest.mark.skipif(not rans_kernels.available(), reason='numba is not installed')


def round_trip(table, symbols, indexes, substreams=1):
    """Encode and decode with every engine: the same bytes, the symbols back."""
    outputs = set()
    for engine in RUNNABLE_ENGINES:
        coder = ConstrictionAnsCoder(substreams, engine)
        data = coder.encode(symbols, indexes, table)
        outputs.add(data)
        for decoder in RUNNABLE_ENGINES:
            decoded = ConstrictionAnsCoder(substreams, decoder).decode(data, indexes, table)
            assert decoded.dtype == np.int32
            np.testing.assert_array_equal(decoded, symbols)
    assert len(outputs) == 1, 'the engines wrote different bytes'
    return data


# --- quantize_pmf -------------------------------------------------------------------------------

pmf_rows = st.integers(1, 6).flatmap(lambda rows: st.tuples(
    st.lists(st.lists(st.one_of(st.just(0.0), st.floats(0, 1e6), st.floats(0, 1e-12)),
                      min_size=1, max_size=40), min_size=rows, max_size=rows),
    st.integers(8, 24)))


@settings(max_examples=150, deadline=None)
@given(pmf_rows, st.randoms(use_true_random=False))
def test_quantize_pmf_invariants(rows_and_precision, random):
    rows, precision = rows_and_precision
    width = max(len(r) for r in rows)
    pmf = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        pmf[i, :len(r)] = r
    lengths = np.array([random.randint(1, width) for _ in rows])
    counts = quantize_pmf(pmf, lengths, precision)
    inside = np.arange(width)[None, :] < lengths[:, None]
    assert counts.dtype == np.int32
    assert np.all(counts[inside] >= 1) and np.all(counts[~inside] == 0)
    np.testing.assert_array_equal(counts.sum(axis=1, dtype=np.int64), 1 << precision)
    np.testing.assert_array_equal(quantize_pmf(pmf.copy(), lengths.copy(), precision), counts)
    # Each count is within one of 1 + its exact share of the free mass.
    values = np.where(inside, pmf, 0.0)
    totals = values.sum(axis=1, keepdims=True)
    share = np.where(totals > 0, values / np.where(totals > 0, totals, 1), inside / lengths[:, None])
    target = 1 + share * ((1 << precision) - lengths)[:, None]
    assert np.all(np.abs(counts - target)[inside] <= 1 + 1e-6)


def test_quantize_pmf_golden_values():
    # 1 + floor(p * 253), then the leftover count to the largest fractional part (ties: first).
    pmf = np.array([[0.1, 0.2, 0.7, 0.0], [0.25, 0.25, 0.5, 0.0], [1.0, 1.0, 1.0, 0.0]])
    counts = quantize_pmf(pmf, np.array([3, 3, 4]), 8)
    np.testing.assert_array_equal(counts, [[26, 52, 178, 0], [64, 64, 128, 0], [85, 85, 85, 1]])


def test_quantize_pmf_leftover_goes_to_largest_fractions_ties_first():
    # Small integer counts: many equal fractional parts. The rule as whole-array numpy: floors, then
    # the leftover by a stable sort of the fractional parts, largest first.
    rng = np.random.default_rng(5)
    for precision in (8, 12, 16):
        pmf = rng.integers(0, 5, (40, 60)).astype(np.float64) * rng.choice([1.0, 1e-300, 3e5], (40, 1))
        lengths = rng.integers(1, 61, 40)
        inside = np.arange(60)[None, :] < lengths[:, None]
        values = np.where(inside, pmf, 0.0)
        totals = np.cumsum(values, axis=1)[:, -1]
        values[totals <= 0] = inside[totals <= 0]
        totals[totals <= 0] = lengths[totals <= 0]
        target = values * ((1 << precision) - lengths)[:, None].astype(np.float64) / totals[:, None]
        base = np.floor(np.where(np.isfinite(target), target, 0.0))
        counts = np.where(inside, base.astype(np.int64) + 1, 0)
        per_entry, extra = np.divmod((1 << precision) - counts.sum(axis=1), lengths)
        order = np.argsort(np.where(inside, base - target, 2.0), axis=1, kind='stable')
        rank = np.argsort(order, axis=1)
        expected = counts + np.where(inside, per_entry[:, None] + (rank < extra[:, None]), 0)
        np.testing.assert_array_equal(quantize_pmf(pmf, lengths, precision), expected)


@pytest.mark.parametrize('pmf, lengths, precision', [
    (np.ones((2, 3)), np.array([1, 4]), 16),  # length past the row
    (np.ones((1, 3)), np.array([0]), 16),  # empty row
    (np.ones((1, 3)), np.array([3]), 7),  # precision too low
    (np.array([[1.0, np.nan, 1.0]]), np.array([3]), 16),
    (np.array([[1.0, -1.0, 1.0]]), np.array([3]), 16),
    (np.ones((1, 300)), np.array([300]), 8),  # more symbols than 2**precision
])
def test_quantize_pmf_rejects_bad_input(pmf, lengths, precision):
    with pytest.raises(ValueError):
        quantize_pmf(pmf, lengths, precision)


# --- tables -------------------------------------------------------------------------------------

def test_table_validation_names_the_problem():
    good = np.array([[1, 65535, 0]], dtype=np.int32)
    PmfTable(good, np.array([2]), np.array([0]))
    with pytest.raises(ModelFileError, match='sums to'):
        PmfTable(np.array([[1, 65534, 0]]), np.array([2]), np.array([0]))
    with pytest.raises(ModelFileError, match='entry < 1'):
        PmfTable(np.array([[0, 65536, 0]]), np.array([2]), np.array([0]))
    with pytest.raises(ModelFileError, match='nonzero entry past'):
        PmfTable(np.array([[1, 65534, 1]]), np.array([2]), np.array([0]))
    with pytest.raises(ModelFileError, match='integers'):
        PmfTable(good.astype(np.float32), np.array([2]), np.array([0]))
    with pytest.raises(ModelFileError, match='precision'):
        PmfTable(good, np.array([2]), np.array([0]), precision=25)
    with pytest.raises(ModelFileError, match='shape'):
        PmfTable(good, np.array([2, 2]), np.array([0]))
    with pytest.raises(ModelFileError, match='offsets'):
        PmfTable(good, np.array([2]), np.array([2 ** 31 - 1]))
    table = PmfTable(good, np.array([2]), np.array([0]), precision=np.int32(16))
    assert not table.pmfs.flags.writeable and type(table.precision) is int


def test_gaussian_table_shape_and_centre():
    scales = default_scale_table()
    assert scales.size == 64 and scales[0] == pytest.approx(0.11) and scales[-1] == pytest.approx(256)
    table = gaussian_table(scales)
    assert np.all(table.lengths % 2 == 1)
    np.testing.assert_array_equal(table.offsets, -(table.lengths // 2))
    centre = table.pmfs[np.arange(64), table.lengths // 2]
    np.testing.assert_array_equal(centre, table.pmfs.max(axis=1))
    assert np.all(np.diff(table.lengths) >= 0) and table.lengths[0] == 3
    # Wide scales are capped by max_length.
    assert gaussian_table(np.array([1000.0]), max_length=101).lengths[0] == 101


def test_gaussian_table_rate_matches_the_entropy_of_the_source():
    rng = np.random.default_rng(1)
    scale = 3.0
    table = gaussian_table(np.array([scale]))
    indexes = np.zeros(50_000, np.int32)
    symbols = clamp_symbols(np.round(rng.normal(0, scale, indexes.size)).astype(np.int64), indexes, table)
    bits = table.ideal_bits(symbols, np.zeros(symbols.size, np.int32)) / symbols.size
    # Differential entropy of N(0, 3) is 0.5 log2(2 pi e 9) = 3.63 bits; discretization adds ~0.
    assert bits == pytest.approx(0.5 * np.log2(2 * np.pi * np.e * scale ** 2), abs=0.03)


def test_table_from_pmfs_uses_full_rows_by_default():
    table = table_from_pmfs(np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0]]), np.array([-1, 5]))
    np.testing.assert_array_equal(table.lengths, [3, 3])
    assert table.pmfs[1].tolist() == [21846, 21845, 21845]  # a zero row becomes uniform


def test_clamp_symbols_clips_to_each_row():
    table = gaussian_table(np.array([0.11, 10.0]))
    low, high = table.offsets, table.offsets + table.lengths - 1
    clamped = clamp_symbols(np.array([-1000, 1000, -1000, 1000, 0]), np.array([0, 0, 1, 1, 1]), table)
    np.testing.assert_array_equal(clamped, [low[0], high[0], low[1], high[1], 0])


# --- coder round trips --------------------------------------------------------------------------

@pytest.mark.parametrize('substreams', range(1, 9))
def test_round_trip_random_tables(substreams):
    rng = np.random.default_rng(substreams)
    table = random_table(rng)
    symbols, indexes = random_symbols(rng, table, 5000)
    round_trip(table, symbols, indexes, substreams)


@pytest.mark.parametrize('precision', [8, 16, 24])
def test_round_trip_adversarial_tables(precision):
    total = 1 << precision
    width = min(MAX_TABLE_LENGTH, total)
    rows = []
    lengths = []
    # A dominant symbol with everything else at the minimum probability, coded uniformly at random.
    tiny = np.zeros(width, np.int64)
    tiny[:width] = 1
    tiny[width // 2] = total - (width - 1)
    rows.append(tiny), lengths.append(width)
    # Two symbols, one at the minimum probability.
    two = np.zeros(width, np.int64)
    two[:2] = [1, total - 1]
    rows.append(two), lengths.append(2)
    # A certain symbol (length 1) and an exactly uniform full-width row.
    certain = np.zeros(width, np.int64)
    certain[0] = total
    rows.append(certain), lengths.append(1)
    rows.append(np.full(width, total // width)), lengths.append(width)
    table = PmfTable(np.array(rows), np.array(lengths), np.array([-(width // 2), 7, -3, 0]), precision)
    rng = np.random.default_rng(precision)
    symbols, indexes = random_symbols(rng, table, 4000)
    edges = np.concatenate([table.offsets, table.offsets + table.lengths - 1]).astype(np.int32)
    edge_indexes = np.tile(np.arange(4, dtype=np.int32), 2)
    for substreams in (1, 3):
        round_trip(table, np.concatenate([symbols, edges]), np.concatenate([indexes, edge_indexes]),
                   substreams)


def test_round_trip_gaussian_latent_is_near_the_ideal_rate():
    rng = np.random.default_rng(2)
    scales = default_scale_table()
    table = gaussian_table(scales)
    indexes = rng.integers(0, 64, 60_000).astype(np.int32)
    symbols = clamp_symbols(np.round(rng.normal(0, scales[indexes])).astype(np.int64), indexes, table)
    data = round_trip(table, symbols, indexes, 4)
    ideal = table.ideal_bits(symbols, indexes)
    assert ideal <= 8 * len(data) <= ideal * 1.002 + 8 * (1 + 4 * 4 + 4 * 8)


def test_round_trip_edge_cases():
    table = gaussian_table(np.array([0.11, 5.0]))
    empty = np.zeros(0, np.int32)
    data = round_trip(table, empty, empty, 4)
    assert len(data) == 1 + 4 * 4
    round_trip(table, np.array([0], np.int32), np.array([1], np.int32), 8)  # fewer symbols than streams
    certain = PmfTable(np.array([[1 << 16]]), np.array([1]), np.array([42]))
    data = round_trip(certain, np.full(100, 42, np.int32), np.zeros(100, np.int32))
    assert len(data) == 5  # certain symbols cost nothing


def test_any_integer_dtypes_are_accepted():
    table = gaussian_table(np.array([1.0, 5.0]))
    symbols = np.array([0, 3, -2, 1], np.int64)
    indexes = np.array([0, 1, 1, 0], np.uint8)
    coder = ConstrictionAnsCoder()
    data = coder.encode(symbols, indexes, table)
    np.testing.assert_array_equal(coder.decode(data, indexes, table), symbols)


def _reference_rans(table, symbols, indexes):
    """constriction's AnsCoder<u32, u64> at 24 bits written out, as a native decoder would.

    Shows that the bytes are a pure function of the stored integers: the 24-bit model is
    left[i] = floor(C_i * (2**24 - n) / 2**P) + i, computed here with integers only.
    """
    order = np.argsort(indexes, kind='stable')
    state, words = 0, []
    for position in order[::-1]:  # decoding pops in grouped order, so push in reverse
        row = int(indexes[position])
        n = int(table.lengths[row])
        if n == 1:
            continue
        counts = table.pmfs[row, :n].astype(np.int64)
        cumulative = np.concatenate(([0], np.cumsum(counts)))
        left = [int(c) * ((1 << 24) - n) // (1 << table.precision) + i for i, c in enumerate(cumulative[:-1])]
        left.append(1 << 24)
        column = int(symbols[position]) - int(table.offsets[row])
        low, probability = left[column], left[column + 1] - left[column]
        if (state >> 40) >= probability:
            words.append(state & 0xFFFFFFFF)
            state >>= 32
        state = ((state // probability) << 24) | (low + state % probability)
    while state:
        words.append(state & 0xFFFFFFFF)
        state >>= 32
    body = np.array(words, dtype='<u4').tobytes()
    return bytes([1]) + np.array([len(body)], '<u4').tobytes() + body


@pytest.mark.parametrize('engine', RUNNABLE_ENGINES)
@pytest.mark.parametrize('precision', [12, 16, 24])
def test_bytes_match_an_integer_only_reference(precision, engine):
    rng = np.random.default_rng(precision)
    table = random_table(rng, rows=5, max_length=40, precision=precision)
    symbols, indexes = random_symbols(rng, table, 400)
    coded = ConstrictionAnsCoder(engine=engine).encode(symbols, indexes, table)
    assert coded == _reference_rans(table, symbols, indexes)


@needs_numba
@pytest.mark.parametrize('precision', [8, 16, 24])
def test_numba_model_bounds_equal_constrictions_quantizer(precision):
    """The kernels' integer 24-bit model is the one constriction builds from the float counts: one
    symbol pushed on an empty ANS stack leaves its left bound as the state, which is flushed as is."""
    import constriction

    rng = np.random.default_rng(precision)
    table = random_table(rng, rows=6, max_length=min(500, 1 << precision), precision=precision)
    bounds = rans_kernels.model_bounds(table.pmfs, table.lengths, table.precision)
    for row in np.flatnonzero(table.lengths > 1):
        n = int(table.lengths[row])
        assert bounds[row, n] == 1 << 24
        model = ConstrictionAnsCoder._model(table, int(row))
        for column in range(n):
            ans = constriction.stream.stack.AnsCoder()
            ans.encode_reverse(np.array([column], np.int32), model)
            words = ans.get_compressed()
            assert (int(words[0]) if words.size else 0) == bounds[row, column]


@needs_numba
@pytest.mark.parametrize('bits', [1, 8, 12])
def test_symbol_lookup_is_the_last_symbol_starting_at_or_below_each_probe(bits):
    """The decoder's lookup, filled column by column, against its definition probe by probe: rows with
    many symbols narrower than a probe's step (most of a 24-bit model) and rows of one symbol."""
    rng = np.random.default_rng(bits)
    table = random_table(rng, rows=8, max_length=300, precision=16)
    bounds = rans_kernels.model_bounds(table.pmfs, table.lengths, table.precision)
    lookup = rans_kernels.symbol_lookup(bounds, table.lengths, bits)
    probes = np.arange(1 << bits, dtype=np.int64) << (24 - bits)
    for row in range(table.num_rows):
        n = int(table.lengths[row])
        expected = np.searchsorted(bounds[row, :n].astype(np.int64), probes, side='right') - 1
        assert np.array_equal(lookup[row], expected)


def test_engine_is_checked_and_falls_back_without_numba(monkeypatch):
    assert ConstrictionAnsCoder().engine == RUNNABLE_ENGINES[-1]
    assert ConstrictionAnsCoder(engine='constriction').engine == 'constriction'
    with pytest.raises(ValueError, match='choose one of ' + ', '.join(ENGINES)):
        ConstrictionAnsCoder(engine='fast')
    monkeypatch.setattr(rans_kernels, 'numba', None)
    assert ConstrictionAnsCoder().engine == 'constriction'
    with pytest.raises(ValueError, match='needs the numba package'):
        ConstrictionAnsCoder(engine='numba')


def _code_in_child(queue):
    table = gaussian_table(np.array([0.5, 4.0, 30.0]))
    indexes = np.arange(3000, dtype=np.int32) % 3
    symbols = (np.arange(3000, dtype=np.int32) % 7) - 3
    coder = ConstrictionAnsCoder(4)
    decoded = coder.decode(coder.encode(symbols, indexes, table), indexes, table)
    queue.put(bool(np.array_equal(decoded, symbols)))


@needs_numba
def test_a_forked_child_codes_on_its_own_threads():
    """The parent's coding threads do not exist in a forked child; the child must not wait on them."""
    import multiprocessing

    parent = multiprocessing.get_context('fork').SimpleQueue()
    _code_in_child(parent)
    assert parent.get()
    child = multiprocessing.get_context('fork').Process(target=_code_in_child, args=(parent,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0 and parent.get()


# --- errors and corrupted input -----------------------------------------------------------------

def test_out_of_range_input_is_a_value_error():
    table = gaussian_table(np.array([0.11, 5.0]))
    coder = ConstrictionAnsCoder()
    with pytest.raises(ValueError, match='clamp_symbols'):
        coder.encode(np.array([0, 5000], np.int32), np.array([0, 1], np.int32), table)
    with pytest.raises(ValueError, match='clamp_symbols'):
        coder.encode(np.array([2 ** 31 - 1], np.int64), np.array([0], np.int32), table)
    with pytest.raises(ValueError, match='indexes must be in 0..1'):
        coder.encode(np.array([0], np.int32), np.array([2], np.int32), table)
    with pytest.raises(ValueError, match='indexes must be in'):
        coder.decode(coder.encode(np.zeros(1, np.int32), np.zeros(1, np.int32), table), np.array([-1]), table)
    with pytest.raises(ValueError, match='shaped like'):
        coder.encode(np.zeros(2, np.int32), np.zeros(3, np.int32), table)
    with pytest.raises(ValueError, match='num_substreams'):
        ConstrictionAnsCoder(MAX_SUBSTREAMS + 1)


def test_get_coder_lists_the_available_names():
    assert get_coder('constriction-ans', num_substreams=3).num_substreams == 3
    with pytest.raises(ValueError, match='available: ' + ', '.join(available_coders())):
        get_coder('rans-magic')


@pytest.mark.parametrize('data, message', [
    (b'', 'empty'),
    (bytes([0]), 'declares 0 substreams'),
    (bytes([MAX_SUBSTREAMS + 1]) + bytes(4 * 65), 'declares 65'),
    (bytes([2, 4, 0, 0, 0]), 'truncated'),
    (bytes([1, 3, 0, 0, 0, 1, 2, 3]), 'multiples of 4'),
    (bytes([1, 8, 0, 0, 0, 1, 0, 0, 0]), 'declare 8 bytes but 4 follow'),
    (bytes([1, 0xFC, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0]), 'declare'),
])
def test_split_substreams_checks_every_length(data, message):
    with pytest.raises(PacketError, match=message):
        split_substreams(data)


@pytest.mark.parametrize('engine', RUNNABLE_ENGINES)
def test_trailing_zero_word_and_leftover_data_are_packet_errors(engine):
    table = gaussian_table(np.array([5.0]))
    indexes = np.zeros(10, np.int32)
    coder = ConstrictionAnsCoder(engine=engine)
    with pytest.raises(PacketError, match='corrupted'):
        coder.decode(bytes([1, 4, 0, 0, 0, 0, 0, 0, 0]), indexes, table)
    data = coder.encode(np.arange(10, dtype=np.int32) - 5, indexes, table)
    with pytest.raises(PacketError, match='more data'):
        coder.decode(data, indexes[:5], table)


def _check_garbage_decode(data, indexes, table):
    """Damaged data: a PacketError or in-range symbols, the same from every engine."""
    outcomes = []
    for engine in RUNNABLE_ENGINES:
        try:
            decoded = ConstrictionAnsCoder(engine=engine).decode(data, indexes, table)
        except PacketError:
            outcomes.append(None)
            continue
        assert decoded.shape == indexes.shape and decoded.dtype == np.int32
        columns = decoded - table.offsets[indexes]
        assert np.all(columns >= 0) and np.all(columns < table.lengths[indexes])
        outcomes.append(decoded)
    first = outcomes[0]
    for other in outcomes[1:]:
        assert (first is None) == (other is None)
        if first is not None:
            np.testing.assert_array_equal(first, other)


def test_mutated_streams_never_crash():
    rng = np.random.default_rng(3)
    table = random_table(rng, rows=6, max_length=50)
    symbols, indexes = random_symbols(rng, table, 2000)
    data = bytearray(ConstrictionAnsCoder(3).encode(symbols, indexes, table))
    for trial in range(300):
        mutated = bytearray(data)
        kind = trial % 3
        if kind == 0:
            position = int(rng.integers(len(mutated)))
            mutated[position] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            mutated = mutated[:int(rng.integers(len(mutated)))]
        else:
            mutated[13:] = rng.integers(0, 256, len(mutated) - 13, dtype=np.uint8).tobytes()
        _check_garbage_decode(bytes(mutated), indexes, table)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data):
    table = gaussian_table(np.array([0.5, 8.0, 60.0]))
    _check_garbage_decode(data, np.arange(300, dtype=np.int32) % 3, table)
