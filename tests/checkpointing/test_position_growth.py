"""The position-table growth rule: factor 1 extends (old rows kept, zero rows added), factor f
stretches (old row r becomes row r * f, rows between interpolate). A stage's whole DiT carried
over (same-resolution output kept exactly, x3 stretch): tests/checkpointing/test_stage_init.py."""
import numpy as np
import pytest

from mgen_jax.checkpointing.position_growth import (extend_table, grow_table, stretch_table,
                                                    stretched_length)

OLD = np.arange(12, dtype=np.float32).reshape(4, 3) + 1.0


def test_stretch_keeps_old_rows_at_multiples_and_interpolates_between():
    new = stretch_table(OLD, 8)
    np.testing.assert_array_equal(new[::2], OLD)
    np.testing.assert_allclose(new[1], (OLD[0] + OLD[1]) / 2)
    np.testing.assert_array_equal(new[7], OLD[3])  # past the last old row: repeated
    np.testing.assert_array_equal(stretch_table(OLD, 12)[::3], OLD)


def test_extend_keeps_old_rows_and_adds_zero_rows():
    new = extend_table(OLD, 7)
    np.testing.assert_array_equal(new[:4], OLD)
    np.testing.assert_array_equal(new[4:], 0.0)
    assert new.dtype == OLD.dtype


def test_stretch_into_a_longer_table_zeroes_the_rows_past_it():
    # x3 into 16 rows: the 4 old rows cover 12, the last 4 (more aspect ratios) start at zero.
    new = grow_table(OLD, 16, 3.0)
    assert stretched_length(4, 3.0) == 12
    np.testing.assert_array_equal(new[:12:3], OLD)
    np.testing.assert_allclose(new[4], OLD[1] + (OLD[2] - OLD[1]) / 3, rtol=1e-6)
    np.testing.assert_array_equal(new[12:], 0.0)


def test_a_table_that_would_lose_rows_is_refused():
    with pytest.raises(ValueError, match=r"4 rows stretched x3 need 12 rows, the new table has 10"):
        grow_table(OLD, 10, 3.0)
    with pytest.raises(ValueError, match="need 4 rows, the new table has 3"):
        extend_table(OLD, 3)
    with pytest.raises(ValueError, match="must be > 0"):
        grow_table(OLD, 8, 0.0)
