"""Source times -> days since the run's start."""

from __future__ import annotations

import numpy as np
import pytest

from astrohpc.data.timeaxis import days_since_start, unwrap_counter
from astrohpc.errors import DataError


def test_exoplasim_steps_become_days_with_the_first_record_one_interval_in():
    # 45-minute steps, daily snapshots written at the last step of each day (31, 63, ...)
    days = days_since_start(np.array([31.0, 63.0, 95.0]), "timesteps", 2700.0, 1.0, "x")
    np.testing.assert_allclose(days, [1.0, 2.0, 3.0])


def test_a_counter_that_restarts_each_model_year_is_unwrapped():
    year = 360 * 32
    steps = np.array([year - 65, year - 33, year - 1, 31, 63], dtype=float)
    np.testing.assert_array_equal(unwrap_counter(steps), [year - 65, year - 33, year - 1, year + 31, year + 63])
    days = days_since_start(steps, "timesteps", 2700.0, 1.0, "x")
    np.testing.assert_allclose(days, [1, 2, 3, 4, 5])


@pytest.mark.parametrize("units, factor", [("days since 0001-01-01", 1.0), ("hours since 2000-1-1 00:00", 1 / 24),
                                           ("seconds since 1970-01-01", 1 / 86400)])
def test_cf_units_count_from_the_first_record(units, factor):
    days = days_since_start(np.array([100.0, 130.0, 160.0]), units, None, None, "x")
    np.testing.assert_allclose(days, np.array([0.0, 30.0, 60.0]) * factor)


def test_unknown_units_and_missing_step_are_errors():
    with pytest.raises(DataError, match="time units 'fortnights' cannot be put in days"):
        days_since_start(np.arange(3.0), "fortnights", None, None, "f.nc")
    with pytest.raises(DataError, match="step length or output interval is unknown.*data.source_step_minutes"):
        days_since_start(np.arange(3.0), "timesteps", None, None, "f.nc")


def test_a_single_record_is_day_zero_whatever_its_units():
    # NCEP_06_climo.nc: one record, time = 120 with no units attribute (long_name "months since Jan 1979")
    np.testing.assert_array_equal(days_since_start(np.array([120.0]), "", None, None, "x"), [0.0])
