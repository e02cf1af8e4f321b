"""Influenza seasons: when people catch influenza-like illness, region by region.

Each winter every region has a wave; the waves travel across the regions, so they peak
in different weeks (``Region.wave_offset_days``), and each season's timing and size
vary. Outside the waves a low sporadic level remains. Dates are drawn from each region's
daily intensity by inverse transform sampling, all regions at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from numpy.typing import NDArray

from accord.synth.profiles import REGIONS

I32 = NDArray[np.int32]
F64 = NDArray[np.float64]

EPOCH = date(1970, 1, 1)
SPORADIC_LEVEL = 0.1
"""Intensity between waves, relative to an average wave's peak."""
WAVE_WIDTH_DAYS = 17.0


def day_number(day: date) -> int:
    """Days since 1970-01-01, the date encoding used throughout the generator."""
    return (day - EPOCH).days


@dataclass(frozen=True)
class InfluenzaSeasons:
    """Daily influenza-like illness intensity for each region over a window of days."""

    first_day: int
    cumulative: F64
    """Per region, the normalised cumulative intensity over the window's days."""
    mean_intensity: float
    """Average daily intensity across regions, relative to the sporadic level plus waves."""

    @classmethod
    def build(cls, first_day: int, last_day: int, rng: np.random.Generator) -> InfluenzaSeasons:
        days = np.arange(first_day, last_day + 1, dtype=np.float64)
        years = range(_year_of(first_day) - 1, _year_of(last_day) + 1)
        intensity = np.full((len(REGIONS), len(days)), SPORADIC_LEVEL)
        offsets = np.array([region.wave_offset_days for region in REGIONS], dtype=np.float64)
        for year in years:
            # The consortium's season peaks around the New Year, a few weeks either way.
            centre = day_number(date(year + 1, 1, 5)) + rng.normal(0.0, 9.0)
            size = rng.uniform(0.7, 1.3)
            peaks = centre + offsets * rng.uniform(0.8, 1.2) + rng.normal(0.0, 4.0, len(REGIONS))
            intensity += size * np.exp(
                -0.5 * ((days[None, :] - peaks[:, None]) / WAVE_WIDTH_DAYS) ** 2
            )
        cumulative = np.cumsum(intensity, axis=1)
        mean = float(intensity.mean())
        return cls(
            first_day=first_day, cumulative=cumulative / cumulative[:, -1:], mean_intensity=mean
        )

    def draw_dates(self, region: I32, rng: np.random.Generator) -> I32:
        """One illness date for each entry of ``region``, following that region's waves."""
        dates = np.empty(len(region), dtype=np.int32)
        uniform = rng.random(len(region))
        for index in range(len(REGIONS)):
            # One searchsorted per region (a handful), never per person.
            chosen = region == index
            offset = np.searchsorted(self.cumulative[index], uniform[chosen], side="left")
            dates[chosen] = self.first_day + offset
        return dates


def _year_of(day: int) -> int:
    return date.fromordinal(EPOCH.toordinal() + day).year
