"""SQL text handling for the proxy: a small tokenizer, statement splitting and the DDL rewrites.

Redshift-only DDL is accepted and dropped before PostgreSQL sees it (DISTSTYLE, DISTKEY, SORTKEY,
BACKUP, ENCODE); PRIMARY KEY, UNIQUE and REFERENCES are dropped too because Redshift does not enforce
them (docs: CREATE TABLE, "Primary key constraints are informational only"), while NOT NULL stays.
Everything is done on tokens, so the same words inside string literals, quoted identifiers or
comments are never touched. Statements other than CREATE TABLE pass through unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>[eE]?'(?:[^']|'')*')
  | (?P<qident>"(?:[^"]|"")*")
  | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z_0-9]*)?\$.*?\$(?P=tag)?\$)
  | (?P<param>\$\d+)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_\x80-\uffff][A-Za-z_0-9$\x80-\uffff]*)
  | (?P<op>::|<>|<=|>=|!=|\|\||.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str  # ws, comment, string, qident, dollar, param, number, word, op
    text: str

    @property
    def significant(self) -> bool:
        return self.kind not in ("ws", "comment")

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else self.text

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


class SqlSyntaxError(ValueError):
    """Text the tokenizer cannot split (an unterminated literal or comment)."""


def tokenize(sql: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        if not m or m.end() == pos:
            raise SqlSyntaxError(f"cannot tokenize SQL at offset {pos}: {sql[pos:pos + 30]!r}")
        kind = m.lastgroup if m.lastgroup != "tag" else "dollar"
        text = m.group(0)
        if kind == "op" and text in ("'", '"'):
            raise SqlSyntaxError(f"unterminated quoted text at offset {pos}")
        if kind == "op" and text == "/" and sql.startswith("/*", pos):
            raise SqlSyntaxError(f"unterminated comment at offset {pos}")
        tokens.append(Token(kind, text))
        pos = m.end()
    return tokens


def join(tokens: list[Token]) -> str:
    return "".join(t.text for t in tokens)


def split_statements(sql: str) -> list[list[Token]]:
    """Top-level statements (without their ';'); empty statements are dropped."""
    statements, current = [], []
    for tok in tokenize(sql):
        if tok.kind == "op" and tok.text == ";":
            statements.append(current)
            current = []
        else:
            current.append(tok)
    statements.append(current)
    return [s for s in statements if any(t.significant for t in s)]


def significant(tokens: list[Token]) -> list[Token]:
    return [t for t in tokens if t.significant]


def first_words(tokens: list[Token], n: int = 4) -> list[str]:
    return [t.upper for t in significant(tokens)[:n]]


def statement_kind(tokens: list[Token]) -> str:
    """'copy', 'truncate', 'create_table' or 'other'."""
    words = first_words(tokens, 5)
    if not words:
        return "empty"
    if words[0] == "COPY":
        return "copy"
    if words[0] == "TRUNCATE":
        return "truncate"
    if words[0] == "CREATE":
        rest = [w for w in words[1:] if w not in ("LOCAL", "TEMP", "TEMPORARY")]
        if rest and rest[0] == "TABLE":
            return "create_table"
    return "other"


# --- CREATE TABLE -------------------------------------------------------------------------------

# Table attributes Redshift accepts after the column list (or before AS in CREATE TABLE AS).
_TABLE_ATTRIBUTES = ("DISTSTYLE", "DISTKEY", "SORTKEY", "COMPOUND", "INTERLEAVED", "BACKUP", "ENCODE")


def _matching_paren(tokens: list[Token], open_index: int) -> int:
    depth = 0
    for i in range(open_index, len(tokens)):
        if tokens[i].kind == "op" and tokens[i].text == "(":
            depth += 1
        elif tokens[i].kind == "op" and tokens[i].text == ")":
            depth -= 1
            if depth == 0:
                return i
    raise SqlSyntaxError("unbalanced parentheses in CREATE TABLE")


def _next_sig(tokens: list[Token], i: int) -> int:
    while i < len(tokens) and not tokens[i].significant:
        i += 1
    return i


def _skip_attribute(tokens: list[Token], i: int) -> int:
    """Index just after one Redshift table attribute starting at tokens[i]."""
    word = tokens[i].upper
    j = _next_sig(tokens, i + 1)
    if word in ("COMPOUND", "INTERLEAVED"):  # COMPOUND SORTKEY (...)
        return _skip_attribute(tokens, j)
    if word in ("DISTSTYLE", "BACKUP", "ENCODE"):  # DISTSTYLE ALL|AUTO|KEY|EVEN, BACKUP YES|NO, ENCODE AUTO
        return j + 1
    if word in ("DISTKEY", "SORTKEY"):
        if j < len(tokens) and tokens[j].kind == "op" and tokens[j].text == "(":
            return _matching_paren(tokens, j) + 1
        return j + 1  # SORTKEY AUTO
    raise AssertionError(word)


def _split_elements(tokens: list[Token]) -> list[list[Token]]:
    elements, current, depth = [], [], 0
    for tok in tokens:
        if tok.kind == "op" and tok.text == "(":
            depth += 1
        elif tok.kind == "op" and tok.text == ")":
            depth -= 1
        if depth == 0 and tok.kind == "op" and tok.text == ",":
            elements.append(current)
            current = []
        else:
            current.append(tok)
    elements.append(current)
    return elements


def _strip_column(element: list[Token]) -> list[Token]:
    """A column definition without ENCODE x, DISTKEY, SORTKEY, PRIMARY KEY, UNIQUE, REFERENCES t(c)."""
    out, i = [], 0
    while i < len(element):
        tok = element[i]
        if tok.is_word("ENCODE"):
            i = _next_sig(element, i + 1) + 1
            continue
        if tok.is_word("DISTKEY", "SORTKEY", "UNIQUE"):
            i += 1
            continue
        if tok.is_word("PRIMARY"):
            j = _next_sig(element, i + 1)
            if j < len(element) and element[j].is_word("KEY"):
                i = j + 1
                continue
        if tok.is_word("REFERENCES"):
            j = _next_sig(element, i + 1) + 1  # the table
            while _next_sig(element, j) < len(element) and element[_next_sig(element, j)].text == ".":
                j = _next_sig(element, _next_sig(element, j) + 1) + 1
            k = _next_sig(element, j)
            if k < len(element) and element[k].text == "(":
                j = _matching_paren(element, k) + 1
            i = j
            continue
        out.append(tok)
        i += 1
    return out


def _is_unenforced_constraint(element: list[Token]) -> bool:
    words = first_words(element, 3)
    if words and words[0] == "CONSTRAINT":
        words = words[2:]
    return bool(words) and words[0] in ("PRIMARY", "UNIQUE", "FOREIGN")


def rewrite_create_table(tokens: list[Token]) -> list[Token]:
    """CREATE TABLE without Redshift's physical design and without unenforced constraints."""
    out: list[Token] = []
    i = 0
    # Copy up to the element list '(' or the first table attribute / AS.
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "op" and tok.text == "(":
            close = _matching_paren(tokens, i)
            elements = [e for e in _split_elements(tokens[i + 1 : close]) if not _is_unenforced_constraint(e)]
            body: list[Token] = []
            for n, element in enumerate(elements):
                if n:
                    body.append(Token("op", ","))
                body += element if first_words(element, 1) == ["LIKE"] else _strip_column(element)
            out += [tok, *body, tokens[close]]
            i = close + 1
            break
        if tok.kind == "word" and tok.upper in _TABLE_ATTRIBUTES + ("AS",):
            break
        out.append(tok)
        i += 1
    # After the element list: drop table attributes, keep the rest (AS SELECT …).
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "word" and tok.upper in _TABLE_ATTRIBUTES:
            i = _skip_attribute(tokens, i)
            continue
        if tok.is_word("AS"):
            out += tokens[i:]
            break
        out.append(tok)
        i += 1
    return out


def rewrite_statement(tokens: list[Token]) -> str:
    if statement_kind(tokens) == "create_table":
        return join(rewrite_create_table(tokens))
    return join(tokens)


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def string_value(tok: Token) -> str:
    """The value of a standard SQL string literal ('' doubled quotes); E'' strings are refused."""
    if tok.kind != "string":
        raise SqlSyntaxError(f"expected a quoted string, got {tok.text!r}")
    if tok.text[0] in "eE":
        raise SqlSyntaxError(f"E'' escape strings are not emulated: {tok.text!r}")
    return tok.text[1:-1].replace("''", "'")
