"""Members, national ids and influenza seasons: the generator's building blocks."""

from __future__ import annotations

from datetime import date

import numpy as np

from accord.bench import synth as bench_synth
from accord.synth.population import luhn_check_digit, plan_sharing
from accord.synth.profiles import KIND_CYCLE, MEMBER_ID_PATTERN, MemberKind, plan_members
from accord.synth.seasons import InfluenzaSeasons, day_number


def test_members_cycle_through_the_kinds_with_unique_ids() -> None:
    specs = plan_members(12)
    assert [s.kind for s in specs[:5]] == list(KIND_CYCLE)
    assert specs[0].id == "northgate-hospital"
    assert specs[2].kind == MemberKind.INSURER
    assert specs[2].id == "unity-insurance"
    ids = [s.id for s in specs]
    assert len(set(ids)) == len(ids)
    assert all(MEMBER_ID_PATTERN.fullmatch(i) for i in ids)
    assert all(s.db_file == f"{s.id}.duckdb" for s in specs)


def test_names_repeat_with_a_suffix_once_a_kind_runs_out() -> None:
    specs = plan_members(35)
    ids = [s.id for s in specs]
    assert len(set(ids)) == len(ids)
    assert "northgate-hospital-2" in ids


def test_luhn_check_digit_matches_the_textbook_example() -> None:
    # 7992739871 has check digit 3 (the classic Luhn example, without its last digit
    # shifted: 79927398713).
    body = np.array([799273987], dtype=np.int64)
    digit = luhn_check_digit(body)[0]
    number = f"{body[0]}{digit}"
    total = 0
    for position, char in enumerate(reversed(number)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    assert total % 10 == 0


def test_influenza_dates_follow_regional_winter_waves() -> None:
    first, last = day_number(date(2018, 1, 1)), day_number(date(2025, 12, 31))
    seasons = InfluenzaSeasons.build(first, last, np.random.default_rng(5))
    rng = np.random.default_rng(6)
    region = np.repeat(np.arange(6, dtype=np.int32), 20000)
    days = seasons.draw_dates(region, rng)
    assert days.min() >= first
    assert days.max() <= last
    month = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12 + 1
    winter = np.isin(month, (12, 1, 2)).sum()
    summer = np.isin(month, (6, 7, 8)).sum()
    assert winter > 4 * summer

    # Waves travel: the first region peaks weeks before the last one. Count days from
    # 1 November, so a season's December and January are adjacent.
    in_season = np.isin(month, (11, 12, 1, 2, 3))
    season_day = (days - day_number(date(2017, 11, 1))) % 365

    def median_day(region_index: int) -> float:
        chosen = in_season & (region == region_index)
        return float(np.median(season_day[chosen]))

    assert median_day(0) + 30 < median_day(5)


def test_bench_reports_patients_per_second() -> None:
    result = bench_synth.run(persons=400)
    assert result["bench"] == "synth"
    assert result["metric"] == "patients_per_second"
    assert result["unit"] == "patients/s"
    assert result["persons"] == 400
    assert result["rows"] > result["persons"]
    assert result["value"] > 0
    assert result["baseline"] is None
    assert result["ratio"] is None


def test_shared_persons_never_crowd_out_a_members_own() -> None:
    for count in (1, 2, 3, 4, 5, 8, 13, 40):
        specs = plan_members(count)
        shared = dict.fromkeys(range(count), 0)
        for (a, b), persons in plan_sharing(specs, 10_000).items():
            assert specs[a].kind != specs[b].kind or specs[a].kind != MemberKind.INSURER
            shared[a] += persons
            shared[b] += persons
        assert max(shared.values()) <= 4_000
