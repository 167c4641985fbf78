"""Reading lead CSV files into checked rows, with every problem reported by file and row.

Spreadsheets export CSV in many dialects, so `read_leads` accepts UTF-8 (with or without the BOM
Excel writes), UTF-16/32 with a BOM, and `,` `;` tab or `|` as the delimiter (detected from the
header line). Anything else is refused with a message naming the row, rather than guessed at:
a wrong guess would put mangled names into messages that real people receive.

A quoted cell may span lines, but one that swallows other rows (a line holding a LinkedIn profile
URL, or a quote still open at the end of the file) makes the whole file unreadable: a stray quote
must never turn a thousand leads into one. Control characters other than tab are refused per row.

Rows are numbered as a spreadsheet shows them (the header is row 1, blank lines count); `line` is
where the row starts in the file, which differs only after cells spanning several lines.
Values are stripped and empty values are left out of `fields`, so "missing" and "empty" are the
same thing everywhere downstream. Column names are normalised to lower_snake (`Full Name` →
`full_name`) because templates refer to them as `lead.full_name`.

The reader does not know about the store: duplicates are checked within the file only; blocks and
enrollments are the importer's business (`runner.leads`).
"""
from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from runner.language.diagnostics import Diagnostic, error, has_errors, sort_diagnostics, warning
from runner.language.urls import normalize_profile_url

URL_FIELD = "linkedin_profile_url"
DELIMITERS = (",", ";", "\t", "|")

# Cells may legitimately be long (notes, bios), but an unclosed quote can swallow the rest of the
# file into one cell; this bounds the damage while allowing any real cell.
csv.field_size_limit(16 * 1024 * 1024)

_BOMS = (  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
_SAVE_AS_UTF8 = 'save it as UTF-8 (in Excel: "CSV UTF-8")'
_NOT_WORD = re.compile(r"\W+")


class RowProblem(str):
    """A row error message that also says what kind of problem it is, for grouped summaries.

    It is a `str` so that messages compare and print as plain text.
    """

    kind: str

    def __new__(cls, message: str, kind: str) -> RowProblem:
        problem = super().__new__(cls, message)
        problem.kind = kind
        return problem


# Kinds of row problems found in the file itself (the importer adds its own for the store).
INVALID_URL = "invalid URL"
MISSING_URL = "no profile URL"
MISSING_FIELD = "missing required field"
DUPLICATE = "duplicate in file"
EXTRA_CELLS = "more cells than columns"
CONTROL_CHARACTER = "control character"


def problem_kind(message: str) -> str:
    """The kind of a row problem (plain strings, e.g. from other checks, are "other")."""
    return getattr(message, "kind", "other")


@dataclass(frozen=True, slots=True)
class LeadRow:
    """One data row. `errors` are messages without the `row N:` prefix; empty when the row is good."""

    row: int  # as a spreadsheet numbers it: the header is row 1
    line: int  # the file line the row starts on
    fields: dict[str, str]  # column -> stripped value; empty cells are absent
    key: str | None  # normalised profile key (see runner.language.urls); None when the URL is invalid
    profile_url: str | None  # canonical profile URL; None when the URL is invalid
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class LeadsFile:
    path: str
    columns: tuple[str, ...] = ()  # normalised names, in file order ("" for an unnamed column)
    rows: list[LeadRow] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    encoding: str = "UTF-8"
    delimiter: str = ","
    fatal: bool = False  # a problem with the whole file (encoding, header): no row can be trusted

    @property
    def has_errors(self) -> bool:
        return has_errors(self.diagnostics)

    @property
    def good_rows(self) -> list[LeadRow]:
        return [r for r in self.rows if not r.errors]

    def row_error(self, row: LeadRow, message: str) -> Diagnostic:
        """A diagnostic about `row` in this file's style (used by the importer for its own checks)."""
        return error(self.path, row.line, 0, f"row {row.row}: {message}")


def normalize_column(name: str) -> str:
    """`Full Name ` -> `full_name`; `LinkedIn Profile URL` -> `linkedin_profile_url`."""
    return _NOT_WORD.sub("_", name.strip().lower()).strip("_")


def read_leads(path: str, *, required_fields: Iterable[str] = ()) -> LeadsFile:
    """Read and check a lead CSV. Problems are in `.diagnostics` (and per row in `.errors`)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        return LeadsFile(path, diagnostics=[error(path, 0, 0, f"cannot read file: {exc.strerror or exc}")], fatal=True)
    return parse_leads(raw, path, required_fields=required_fields)


def parse_leads(raw: bytes, name: str, *, required_fields: Iterable[str] = ()) -> LeadsFile:
    """Like `read_leads`, for bytes already in memory; `name` is used in diagnostics."""
    result = LeadsFile(name)
    text = _decode(raw, result)
    if text is None:
        result.fatal = True
        return result
    result.delimiter = detect_delimiter(text)
    _Parser(result, tuple(required_fields)).parse(text)
    # Every row error is one diagnostic; any error beyond those is about the file as a whole.
    row_errors = sum(len(r.errors) for r in result.rows)
    result.fatal = sum(d.severity == "error" for d in result.diagnostics) > row_errors
    result.diagnostics = sort_diagnostics(result.diagnostics)
    return result


# --- decoding ---------------------------------------------------------------------------------------


def _decode(raw: bytes, result: LeadsFile) -> str | None:
    for bom, codec, label in _BOMS:
        if raw.startswith(bom):
            result.encoding = label
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError as exc:
                result.diagnostics.append(error(result.path, 0, 0, f"file starts with a {label} byte-order mark "
                                                f"but is not valid {label} ({exc.reason}); {_SAVE_AS_UTF8}"))
                return None
            return text if _no_nul(text, result) else None
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        result.diagnostics.append(error(result.path, line, 0, f"line {line}: the file contains NUL bytes, so it is not "
                                        f"UTF-8 text (UTF-16 without a byte-order mark?); {_SAVE_AS_UTF8}"))
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _report_bad_utf8(raw, exc, result)
        return None


def _no_nul(text: str, result: LeadsFile) -> bool:
    nul = text.find("\x00")
    if nul < 0:
        return True
    line = text.count("\n", 0, nul) + 1
    result.diagnostics.append(error(result.path, line, 0, f"line {line}: the file contains NUL characters; "
                                    f"is it really a CSV file? If so, {_SAVE_AS_UTF8}"))
    return False


def _report_bad_utf8(raw: bytes, exc: UnicodeDecodeError, result: LeadsFile) -> None:
    """Name the spreadsheet row holding the first byte that is not UTF-8."""
    bad_line = raw.count(b"\n", 0, exc.start) + 1
    text = raw.decode("utf-8", "surrogateescape")
    row, line = bad_line, bad_line
    try:
        for index, start, _cells, end in _records(_lines(text), detect_delimiter(text)):
            if end >= bad_line:
                row, line = index, start
                break
    except _CsvError:
        pass  # the line number computed above is still right
    guess = " (it looks like Windows-1252, Excel's plain \"CSV\")" if _is_cp1252(raw) else ""
    result.diagnostics.append(error(result.path, line, 0, f"row {row}: the file is not UTF-8{guess}: byte "
                                    f"0x{raw[exc.start]:02x} is not valid; {_SAVE_AS_UTF8}"))


def _is_cp1252(raw: bytes) -> bool:
    try:
        raw.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return True


# --- CSV structure ----------------------------------------------------------------------------------


def detect_delimiter(text: str) -> str:
    """The delimiter used most often in the header line, counting only outside quotes.

    csv.Sniffer looks at cell contents too and is easily fooled by commas inside names; the header
    is the one line whose structure we know. Ties go to the order of DELIMITERS (comma first).
    """
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in text.lstrip("\r\n"):
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char in "\r\n":
            break
        elif char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


class _CsvError(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


_Record = tuple[int, int, list[str], int]  # (spreadsheet row, first line, cells, last line)


def _lines(text: str) -> list[str]:
    """The file's lines as the csv module sees them (\n, \r\n or a bare \r ends a line)."""
    return list(io.StringIO(text, newline=""))


def _records(lines: list[str], delimiter: str) -> Iterator[_Record]:
    """(spreadsheet row, first line, cells, last line) for every record, blank lines included."""
    reader = csv.reader(lines, delimiter=delimiter)
    end = 0
    index = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _CsvError(str(exc), end + 1) from None
        index += 1
        start, end = end + 1, reader.line_num
        yield index, start, cells, end


# --- quotes that swallow rows ---------------------------------------------------------------------
#
# The csv module reads a cell that opens with a quote up to the next quote, line breaks and all, and
# at the end of the file it quietly closes whatever is open. One stray quote can thus turn the rest
# of a file into a single cell. Cells may span lines (spreadsheets write multi-line notes that way),
# so the rule is narrower: a cell may not hold a line that looks like another lead row (it carries
# a LinkedIn profile URL), and a quote may not be left open at the end of the file.

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_PROFILE_URL = re.compile(r"linkedin\.com/(?:mwlite/)?(?:in|pub|sales/lead|sales/people)/", re.IGNORECASE)


class _QuoteError(Exception):
    """A quote that makes one cell take in other rows (or a lone carriage return that cuts one in
    two): the rest of the file cannot be trusted."""

    def __init__(self, message: str, row: int, line: int) -> None:
        super().__init__(message)
        self.row, self.line = row, line


def _open_quote_cell(raw: str, delimiter: str) -> int | None:
    """The index of the cell whose opening quote is still open at the end of `raw`, else None.

    Mirrors the csv module: only a quote at the very start of a cell opens a quoted cell; `""`
    inside it is a literal quote; anything else is literal up to the next delimiter.
    """
    quoted = re.compile(r'"(?:[^"]|"")*"')
    unquoted = re.compile(f"[^{re.escape(delimiter)}\r\n]*")
    at, cell = 0, 0
    while at < len(raw):
        if raw[at] == '"':
            match = quoted.match(raw, at)
            if match is None:
                return cell
            at = match.end()
        at = unquoted.match(raw, at).end()  # type: ignore[union-attr]  # `*` always matches
        if at < len(raw) and raw[at] == delimiter:
            cell += 1
        else:
            cell = 0  # a line break ends the record
        at += 1
    return None


# --- control characters -----------------------------------------------------------------------------
#
# A lead's text ends up on terminals (`leads list`, `render`) and in messages. Control characters
# other than tab and the line breaks of a multi-line cell are refused, not stripped: an escape
# sequence (a terminal title change, a cursor move) or a bare carriage return hiding the start of a
# line is never what the person who filled the spreadsheet meant, and stripping would hide that.

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_MAYBE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")  # CRLF line ends are fine
_CONTROL_NAMES = {0x07: "BEL", 0x08: "backspace", 0x0B: "vertical tab", 0x0C: "form feed", 0x0D: "carriage return",
                  0x1B: "ESC", 0x7F: "DEL", 0x90: "DCS", 0x9B: "CSI", 0x9C: "ST", 0x9D: "OSC"}


def _control_characters(fields: dict[str, str]) -> list[RowProblem]:
    problems = []
    for column, value in fields.items():
        found = _CONTROL.search(value)
        if found:
            code = ord(found.group())
            name = f" ({_CONTROL_NAMES[code]})" if code in _CONTROL_NAMES else ""
            problems.append(RowProblem(f"{column} contains the control character U+{code:04X}{name}; such characters "
                                       "can take over a terminal and have no place in a message; remove it",
                                       CONTROL_CHARACTER))
    return problems


class _Parser:
    def __init__(self, result: LeadsFile, required: tuple[str, ...]) -> None:
        self.result = result
        self.name = result.path
        self.required = tuple(f for f in dict.fromkeys(required) if f != URL_FIELD)

    def parse(self, text: str) -> None:
        self.lines = _lines(text)
        self.controls = _MAYBE_CONTROL.search(text) is not None  # one scan spares 100k rows a check each
        records = self._checked(_records(self.lines, self.result.delimiter))
        try:
            header = self._header(records)
            if header is not None:
                self._rows(records, *header)
        except _CsvError as exc:
            self.result.diagnostics.append(error(self.name, exc.line, 0, f"line {exc.line}: cannot read the file "
                                                 f"as CSV: {exc} (an unclosed quote?)"))
        except _QuoteError as exc:
            self.result.diagnostics.append(error(self.name, exc.line, 0, f"row {exc.row}: {exc}"))

    def _checked(self, records: Iterator[_Record]) -> Iterator[_Record]:
        """The records, stopping at the first quoted cell that swallows other rows, or at the first
        row a lone carriage return cuts short."""
        last = len(self.lines)
        # In a file whose lines end with \n, a lone \r outside quotes is no line end the author meant.
        lone_cr_splits = self.controls and any(line.endswith("\n") for line in self.lines)
        for record in records:
            index, start, _cells, end = record
            if end == last:
                self._check_open_quote(record)
            if end > start:
                self._check_swallowed_rows(record)
            if lone_cr_splits and self.lines[end - 1].endswith("\r"):
                raise _QuoteError("a carriage return (U+000D) in the middle of the line ends the row early, and "
                                  "what follows it would be read as another row; remove it", index, start)
            yield record

    def _check_open_quote(self, record: _Record) -> None:
        index, start, _cells, end = record
        cell = _open_quote_cell("".join(self.lines[start - 1:end]), self.result.delimiter)
        if cell is None:
            return
        lines = end - start
        more = f" and takes in {lines} more line{'s' if lines > 1 else ''}" if lines else ""
        raise _QuoteError(f'the quote (") that opens the cell in column {self._column(cell)} is never closed, so '
                          f"the cell runs to the end of the file{more}; close the quote, or remove it", index, start)

    def _check_swallowed_rows(self, record: _Record) -> None:
        index, start, cells, _end = record
        breaks_before = 0
        for i, cell in enumerate(cells):
            parts = _LINE_BREAK.split(cell)
            for j, part in enumerate(parts[1:], 1):
                if _PROFILE_URL.search(part):
                    shown = part if len(part) <= 80 else part[:79] + "…"
                    raise _QuoteError(f"the quoted cell in column {self._column(i)} runs over {len(parts)} lines "
                                      f"and takes in what looks like another row on line {start + breaks_before + j} "
                                      f'("{shown}"); a closing quote (") is probably missing', index, start)
            breaks_before += len(parts) - 1

    def _column(self, index: int) -> str:
        columns = self.result.columns
        return columns[index] if index < len(columns) and columns[index] else str(index + 1)

    def _header(self, records: Iterator[_Record]) -> tuple[int, list[tuple[int, str]]] | None:
        for _index, line, cells, _end in records:
            if any(c.strip() for c in cells):
                return self._check_header(line, cells)
        self.result.diagnostics.append(error(self.name, 0, 0, f"the file is empty; expected a header row with a "
                                             f"{URL_FIELD} column"))
        return None

    def _check_header(self, line: int, cells: list[str]) -> tuple[int, list[tuple[int, str]]] | None:
        columns = tuple(normalize_column(c) for c in cells)
        self.result.columns = columns
        diags = self.result.diagnostics
        first: dict[str, int] = {}
        named: list[tuple[int, str]] = []
        for i, column in enumerate(columns):
            if not column:
                continue
            if column in first:
                j = first[column]
                diags.append(error(self.name, line, 0, f'header: column "{column}" appears twice (columns {j + 1} '
                                   f'and {i + 1}: "{cells[j].strip()}" and "{cells[i].strip()}")'))
                continue
            first[column] = i
            named.append((i, column))
        if URL_FIELD not in first:
            diags.append(error(self.name, line, 0, self._missing_url_column(cells)))
            return None
        for column in self.required:
            if column not in first:
                diags.append(error(self.name, line, 0, f'header: required column "{column}" is missing '
                                   f"(found: {', '.join(c for c in columns if c) or 'none'})"))
        self.required = tuple(c for c in self.required if c in first)
        return line, named

    def _missing_url_column(self, cells: list[str]) -> str:
        if any("linkedin.com/" in c.lower() for c in cells):
            return (f"header: the first row looks like data, not a header; add a header row with a {URL_FIELD} "
                    "column")
        found = ", ".join(f'"{c.strip()}"' for c in cells if c.strip())
        return f"header: no {URL_FIELD} column (found: {found}); name the column holding profile URLs {URL_FIELD}"

    def _rows(self, records: Iterator[_Record], header_line: int,
              named: list[tuple[int, str]]) -> None:
        width = len(self.result.columns)
        unnamed = [i for i, c in enumerate(self.result.columns) if not c]
        seen: dict[str, int] = {}
        rows = self.result.rows
        for index, line, cells, end in records:
            if not any(c.strip() for c in cells):
                continue  # blank lines, and the ",,,," lines spreadsheets write for empty rows
            fields = {}
            for i, column in named:
                if i < len(cells):
                    value = cells[i].strip()
                    if value:
                        fields[column] = value
            if end > line:  # a cell spans lines: a line break in it is "\n", whatever the file's line ends
                fields = {column: value.replace("\r\n", "\n") for column, value in fields.items()}
            errors: list[str] = []
            if self.controls:
                errors += _control_characters(fields)
            if len(cells) > width and any(c.strip() for c in cells[width:]):
                errors.append(RowProblem(f"has {len(cells)} cells but the header has {width} columns", EXTRA_CELLS))
            if unnamed and any(i < len(cells) and cells[i].strip() for i in unnamed):
                self._unnamed_values(header_line, index, unnamed)
                unnamed = []  # one warning is enough
            key, url = self._url(fields.get(URL_FIELD), errors)
            if key is not None:
                if key in seen:
                    errors.append(RowProblem(f"duplicate of row {seen[key]} ({url})", DUPLICATE))
                else:
                    seen[key] = index
            for column in self.required:
                if column not in fields:
                    errors.append(RowProblem(f"required field {column} is empty", MISSING_FIELD))
            row = LeadRow(index, line, fields, key, url, tuple(errors))
            rows.append(row)
            for message in errors:
                self.result.diagnostics.append(error(self.name, line, 0, f"row {index}: {message}"))

    def _url(self, value: str | None, errors: list[str]) -> tuple[str | None, str | None]:
        if value is None:
            errors.append(RowProblem(f"{URL_FIELD} is empty", MISSING_URL))
            return None, None
        try:
            return normalize_profile_url(value)
        except ValueError as exc:
            errors.append(RowProblem(f'{URL_FIELD} "{value}" is not a LinkedIn profile URL ({exc})', INVALID_URL))
            return None, None

    def _unnamed_values(self, header_line: int, row: int, unnamed: list[int]) -> None:
        which = f"column {unnamed[0] + 1} has" if len(unnamed) == 1 else \
            f"columns {', '.join(str(i + 1) for i in unnamed)} have"
        self.result.diagnostics.append(warning(self.name, header_line, 0, f"header: {which} no name; the values "
                                               f"(from row {row} on) are ignored"))

