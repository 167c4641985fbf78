"""Reading lead CSVs: dialects, encodings, header checks and exact row messages."""
from __future__ import annotations

import codecs
from pathlib import Path

from runner.language.diagnostics import format_text
from runner.project.leadsfile import LeadRow, detect_delimiter, normalize_column, parse_leads, problem_kind, read_leads

HEADER = "linkedin_profile_url,full_name,company_name\n"


def messages(data: bytes | str, *, required: tuple[str, ...] = ()) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return format_text(parse_leads(raw, "leads.csv", required_fields=required).diagnostics)


def test_reads_rows_with_keys_canonical_urls_and_stripped_fields(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(HEADER + " https://de.linkedin.com/in/Jane-Doe/ , Jane Doe ,\n"
                    "linkedin.com/in/bob-roe,Bob Roe,Acme\n", encoding="utf-8")
    leads = read_leads(str(path))
    assert leads.diagnostics == []
    assert leads.columns == ("linkedin_profile_url", "full_name", "company_name")
    assert leads.rows == [
        LeadRow(2, 2, {"linkedin_profile_url": "https://de.linkedin.com/in/Jane-Doe/", "full_name": "Jane Doe"},
                "jane-doe", "https://www.linkedin.com/in/jane-doe"),
        LeadRow(3, 3, {"linkedin_profile_url": "linkedin.com/in/bob-roe", "full_name": "Bob Roe",
                       "company_name": "Acme"}, "bob-roe", "https://www.linkedin.com/in/bob-roe"),
    ]
    assert leads.good_rows == leads.rows


def test_invalid_url_is_reported_with_file_and_row() -> None:
    text = HEADER + "".join(f"https://www.linkedin.com/in/lead-{i},L,C\n" for i in range(5)) + "htps://x,X,Y\n"
    assert messages(text) == ('leads.csv:7: error: row 7: linkedin_profile_url "htps://x" is not a LinkedIn '
                              'profile URL (expected an http(s) URL, got scheme "htps")')


def test_duplicates_within_file_name_the_first_row() -> None:
    others = "".join(f"https://www.linkedin.com/in/lead-{i},L,\n" for i in range(6))
    text = (HEADER + "https://www.linkedin.com/in/jane-doe,Jane,\n" + others
            + "HTTPS://DE.LINKEDIN.COM/in/Jane-Doe?trk=1,Jane again,\n")
    leads = parse_leads(text.encode(), "leads.csv")
    assert format_text(leads.diagnostics) == \
        "leads.csv:9: error: row 9: duplicate of row 2 (https://www.linkedin.com/in/jane-doe)"
    assert [r.row for r in leads.rows if r.errors] == [9]


def test_missing_url_and_required_fields_are_row_errors() -> None:
    text = HEADER + ",Jane,Acme\nhttps://www.linkedin.com/in/bob-roe,,Acme\n"
    assert messages(text, required=("full_name",)) == (
        "leads.csv:2: error: row 2: linkedin_profile_url is empty\n"
        "leads.csv:3: error: row 3: required field full_name is empty")


def test_rows_are_numbered_like_a_spreadsheet_and_positioned_by_line() -> None:
    text = HEADER + '\nhttps://www.linkedin.com/in/jane-doe,"Jane\nDoe",\nhtps://x,B,\n'
    leads = parse_leads(text.encode(), "leads.csv")
    assert [(r.row, r.line) for r in leads.rows] == [(3, 3), (4, 5)]
    assert leads.rows[0].fields["full_name"] == "Jane\nDoe"
    assert format_text(leads.diagnostics).startswith("leads.csv:5: error: row 4: ")


def test_blank_and_empty_cell_lines_are_skipped() -> None:
    text = "\n" + HEADER + ",,\n\n   ,  ,\nhttps://www.linkedin.com/in/jane-doe,Jane,\n"
    leads = parse_leads(text.encode(), "leads.csv")
    assert leads.diagnostics == []
    assert [r.row for r in leads.rows] == [6]


def test_utf8_bom_is_accepted() -> None:
    leads = parse_leads(codecs.BOM_UTF8 + (HEADER + "https://www.linkedin.com/in/jürgen,Jürgen,\n").encode(), "x.csv")
    assert leads.diagnostics == []
    assert leads.columns[0] == "linkedin_profile_url"
    assert leads.rows[0].fields["full_name"] == "Jürgen"


def test_utf16_with_bom_is_decoded() -> None:
    raw = (HEADER + "https://www.linkedin.com/in/jürgen,Jürgen,\n").encode("utf-16")
    leads = parse_leads(raw, "x.csv")
    assert (leads.diagnostics, leads.encoding) == ([], "UTF-16")
    assert leads.rows[0].key == "jürgen"


def test_utf16_without_bom_is_refused() -> None:
    raw = (HEADER + "https://www.linkedin.com/in/jane-doe,Jane,\n").encode("utf-16-le")
    assert messages(raw) == ('leads.csv:1: error: line 1: the file contains NUL bytes, so it is not UTF-8 text '
                             '(UTF-16 without a byte-order mark?); save it as UTF-8 (in Excel: "CSV UTF-8")')


def test_non_utf8_is_refused_naming_the_row() -> None:
    raw = (HEADER + "https://www.linkedin.com/in/jane-doe,Jane,\n"
           + 'https://www.linkedin.com/in/j-m,"J\nM\u00fcller",\n').encode("cp1252")
    assert messages(raw) == ('leads.csv:3: error: row 3: the file is not UTF-8 (it looks like Windows-1252, '
                             'Excel\'s plain "CSV"): byte 0xfc is not valid; save it as UTF-8 (in Excel: "CSV UTF-8")')


def test_semicolon_delimiter_is_detected() -> None:
    text = "LinkedIn Profile URL;Full Name;Company, Inc.\nhttps://www.linkedin.com/in/jane-doe;Doe, Jane;Acme, Inc.\n"
    leads = parse_leads(text.encode(), "x.csv")
    assert (leads.diagnostics, leads.delimiter) == ([], ";")
    assert leads.columns == ("linkedin_profile_url", "full_name", "company_inc")
    assert leads.rows[0].fields["full_name"] == "Doe, Jane"


def test_delimiter_detection_ignores_quoted_delimiters() -> None:
    assert detect_delimiter('"a,b,c";"d"\n1,2,3,4,5\n') == ";"
    assert detect_delimiter("a\tb\tc\n") == "\t"
    assert detect_delimiter("a|b\n") == "|"
    assert detect_delimiter("\n\nlinkedin_profile_url\n") == ","


def test_column_names_are_normalised() -> None:
    assert normalize_column(" Full Name ") == "full_name"
    assert normalize_column("LinkedIn Profile-URL") == "linkedin_profile_url"
    assert normalize_column("Straße") == "straße"


def test_header_without_url_column_lists_the_columns() -> None:
    assert messages("Name,E-Mail\nJane,j@x.io\n") == (
        'leads.csv:1: error: header: no linkedin_profile_url column (found: "Name", "E-Mail"); '
        "name the column holding profile URLs linkedin_profile_url")


def test_header_missing_looks_like_data() -> None:
    assert messages("https://www.linkedin.com/in/jane-doe,Jane\n") == (
        "leads.csv:1: error: header: the first row looks like data, not a header; add a header row with a "
        "linkedin_profile_url column")


def test_duplicate_columns_are_an_error() -> None:
    assert messages("linkedin_profile_url,Full Name,full_name\n") == (
        'leads.csv:1: error: header: column "full_name" appears twice (columns 2 and 3: "Full Name" and "full_name")')


def test_missing_required_column_is_one_file_error() -> None:
    text = HEADER.replace(",full_name", "") + "https://www.linkedin.com/in/jane-doe,Acme\n"
    assert messages(text, required=("full_name",)) == (
        'leads.csv:1: error: header: required column "full_name" is missing '
        "(found: linkedin_profile_url, company_name)")


def test_extra_cells_are_an_error_unless_empty() -> None:
    text = HEADER + "https://www.linkedin.com/in/jane-doe,Jane,Acme,,\nhttps://www.linkedin.com/in/bob-roe,Bob,Acme,oops\n"
    assert messages(text) == "leads.csv:3: error: row 3: has 4 cells but the header has 3 columns"


def test_unnamed_column_values_are_ignored_with_a_warning() -> None:
    text = "linkedin_profile_url,,full_name\nhttps://www.linkedin.com/in/jane-doe,x,Jane\n"
    leads = parse_leads(text.encode(), "leads.csv")
    assert format_text(leads.diagnostics) == (
        "leads.csv:1: warning: header: column 2 has no name; the values (from row 2 on) are ignored")
    assert leads.rows[0].fields == {"linkedin_profile_url": "https://www.linkedin.com/in/jane-doe", "full_name": "Jane"}
    assert not leads.has_errors


def test_nul_in_utf16_text_is_refused() -> None:
    raw = codecs.BOM_UTF16_LE + (HEADER + "a\x00b,c,d\n").encode("utf-16-le")
    assert messages(raw) == ('leads.csv:2: error: line 2: the file contains NUL characters; is it really a CSV '
                             'file? If so, save it as UTF-8 (in Excel: "CSV UTF-8")')


def test_empty_file_and_unreadable_file(tmp_path: Path) -> None:
    assert messages(b"\n\n") == ("leads.csv: error: the file is empty; expected a header row with a "
                                 "linkedin_profile_url column")
    missing = read_leads(str(tmp_path / "nope.csv"))
    assert format_text(missing.diagnostics) == (
        f"{tmp_path / 'nope.csv'}: error: cannot read file: No such file or directory")


def test_unclosed_quote_swallowing_the_file_is_reported() -> None:
    text = HEADER + 'https://www.linkedin.com/in/jane-doe,"Jane,\n' + "x" * (17 * 1024 * 1024) + "\n"
    out = messages(text)
    assert out.startswith("leads.csv:2: error: line 2: cannot read the file as CSV: field larger than field limit")
    assert out.endswith("(an unclosed quote?)")


def test_hundred_thousand_rows_read_without_errors() -> None:
    rows = "".join(f"https://www.linkedin.com/in/lead-{i},Lead {i},Co\n" for i in range(100_000))
    leads = parse_leads((HEADER + rows).encode(), "big.csv")
    assert not leads.diagnostics
    assert len(leads.rows) == 100_000


# --- stray quotes: a quoted cell must never swallow other rows silently ---------------------------

def _rows(first: int, count: int) -> str:
    return "".join(f"https://www.linkedin.com/in/lead-{i},Lead {i},Co\n" for i in range(first, first + count))


def test_a_quote_left_open_swallowing_the_rest_of_the_file_is_refused_with_its_row() -> None:
    # The adversarial case: 1,000 rows, row 11 opens a quote that nothing closes.
    text = HEADER + _rows(0, 9) + 'https://www.linkedin.com/in/lead-9,"Lead 9,Co\n' + _rows(10, 990)
    leads = parse_leads(text.encode(), "leads.csv")
    assert format_text(leads.diagnostics) == (
        'leads.csv:11: error: row 11: the quote (") that opens the cell in column full_name is never closed, so '
        "the cell runs to the end of the file and takes in 990 more lines; close the quote, or remove it")
    assert leads.fatal
    assert leads.good_rows == leads.rows[:9]


def test_a_quote_left_open_in_the_last_row_is_refused() -> None:
    for tail in ('https://www.linkedin.com/in/jane-doe,"Jane Doe,Acme\n', 'https://www.linkedin.com/in/jane-doe,"Jane'):
        leads = parse_leads((HEADER + tail).encode(), "leads.csv")
        assert format_text(leads.diagnostics) == (
            'leads.csv:2: error: row 2: the quote (") that opens the cell in column full_name is never closed, so '
            "the cell runs to the end of the file; close the quote, or remove it"), tail
        assert leads.fatal


def test_a_quoted_cell_taking_in_other_rows_is_refused_even_when_a_later_quote_closes_it() -> None:
    text = (HEADER + _rows(0, 1) + 'https://www.linkedin.com/in/jane-doe,"Jane,Acme\n' + _rows(1, 3)
            + 'https://www.linkedin.com/in/bob-roe,"Roe, Bob",Acme\n' + _rows(4, 5))
    leads = parse_leads(text.encode(), "leads.csv")
    assert format_text(leads.diagnostics) == (
        "leads.csv:3: error: row 3: the quoted cell in column full_name runs over 5 lines and takes in what looks "
        'like another row on line 4 ("https://www.linkedin.com/in/lead-1,Lead 1,Co"); a closing quote (") is '
        "probably missing")
    assert leads.fatal


def test_a_quoted_cell_taking_in_rows_of_mobile_site_urls_is_refused() -> None:
    # /mwlite/in/ URLs (LinkedIn's lightweight mobile site) are profile URLs too.
    rows = "".join(f"https://www.linkedin.com/mwlite/in/lead-{i},Lead {i},Co\n" for i in range(4))
    text = HEADER + 'https://www.linkedin.com/mwlite/in/jane-doe,"Jane,Acme\n' + rows + '"\n'
    leads = parse_leads(text.encode(), "leads.csv")
    assert format_text(leads.diagnostics) == (
        "leads.csv:2: error: row 2: the quoted cell in column full_name runs over 6 lines and takes in what looks "
        'like another row on line 3 ("https://www.linkedin.com/mwlite/in/lead-0,Lead 0,Co"); a closing quote (") '
        "is probably missing")
    assert leads.fatal


def test_quoted_cells_may_still_span_lines() -> None:
    text = (HEADER + 'https://www.linkedin.com/in/jane-doe,"Jane\nDoe","Acme\r\nLabs"\n'
            + 'https://www.linkedin.com/in/bob-roe,Bob,"Roe ""&"" Sons\nsee linkedin.com/company/roe"')
    leads = parse_leads(text.encode(), "leads.csv")
    assert leads.diagnostics == []
    assert [r.fields for r in leads.rows] == [
        {"linkedin_profile_url": "https://www.linkedin.com/in/jane-doe", "full_name": "Jane\nDoe",
         "company_name": "Acme\nLabs"},
        {"linkedin_profile_url": "https://www.linkedin.com/in/bob-roe", "full_name": "Bob",
         "company_name": 'Roe "&" Sons\nsee linkedin.com/company/roe'},
    ]


def test_literal_quotes_inside_unquoted_cells_are_not_mistaken_for_an_open_quote() -> None:
    text = HEADER + 'https://www.linkedin.com/in/jane-doe,Jane "JJ" Doe,15" Displays'
    leads = parse_leads(text.encode(), "leads.csv")
    assert leads.diagnostics == []
    assert leads.rows[0].fields["company_name"] == '15" Displays'


# --- control characters: terminal escapes and bare carriage returns never get in ---------------------

def test_control_characters_are_refused_with_row_column_and_code() -> None:
    text = (HEADER + "https://www.linkedin.com/in/jane-doe,Jane\x1b]0;pwned\x07 Doe,Acme\n"
            + 'https://www.linkedin.com/in/bob-roe,"Bob\rRoe",Acme\tLabs\n'
            + "https://www.linkedin.com/in/ann-lee,Ann,\x9b31mRed\n"
            + "https://www.linkedin.com/in/max-mo,Max,Mo\x7f\n")
    leads = parse_leads(text.encode(), "leads.csv")
    assert format_text(leads.diagnostics) == (
        "leads.csv:2: error: row 2: full_name contains the control character U+001B (ESC); such characters can "
        "take over a terminal and have no place in a message; remove it\n"
        "leads.csv:3: error: row 3: full_name contains the control character U+000D (carriage return); such "
        "characters can take over a terminal and have no place in a message; remove it\n"
        "leads.csv:5: error: row 4: company_name contains the control character U+009B (CSI); such characters can "
        "take over a terminal and have no place in a message; remove it\n"
        "leads.csv:6: error: row 5: company_name contains the control character U+007F (DEL); such characters can "
        "take over a terminal and have no place in a message; remove it")
    assert not leads.fatal
    assert [r.row for r in leads.rows if r.ok] == []
    assert {problem_kind(e) for r in leads.rows for e in r.errors} == {"control character"}


def test_a_bare_carriage_return_that_splits_a_row_makes_the_file_unreadable() -> None:
    # Outside quotes the csv module ends the row at a lone \r: "Evil,Acme" would become a row of its own
    # and Bob would lose his company without a word (with --skip-invalid).
    text = (HEADER + "https://www.linkedin.com/in/jane-doe,Jane,Acme\n"
            + "https://www.linkedin.com/in/bob-roe,Bob\rEvil,Acme\n"
            + "https://www.linkedin.com/in/ann-lee,Ann,Co\n")
    leads = parse_leads(text.encode(), "leads.csv")
    assert format_text(leads.diagnostics) == (
        "leads.csv:3: error: row 3: a carriage return (U+000D) in the middle of the line ends the row early, and "
        "what follows it would be read as another row; remove it")
    assert leads.fatal
    # A file whose every line ends with a lone \r (old Mac) is fine.
    mac = parse_leads(text.replace("\n", "\r").replace("Bob\rEvil", "Bob").encode(), "leads.csv")
    assert (mac.diagnostics, [r.row for r in mac.good_rows]) == ([], [2, 3, 4])


def test_tabs_and_line_breaks_inside_quoted_cells_are_kept() -> None:
    text = HEADER + 'https://www.linkedin.com/in/jane-doe,Jane\tDoe,"Acme\r\nLabs"\r\n'
    leads = parse_leads(text.encode(), "leads.csv")
    assert leads.diagnostics == []
    assert leads.rows[0].fields == {"linkedin_profile_url": "https://www.linkedin.com/in/jane-doe",
                                    "full_name": "Jane\tDoe", "company_name": "Acme\nLabs"}
