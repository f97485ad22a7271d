"""EnOS's Search Product expressions (`products?action=search`), parsed into a test on a
product. The grammar is EnOS's, with productType and dataFormat beside its fields:

    expr   := term ("or" term)*
    term   := factor ("and" factor)*
    factor := "(" expr ")" | ["not"] "exists" "(" "productTags." KEY ")" | FIELD OP VALUE
    FIELD  := productKey | modelId | productType | dataFormat      (OP: = or in)
            | productName[.default|.zh_CN|.en_US]                  (OP: like or =)
            | productTags.KEY                                      (OP: =)
    VALUE  := 'text' | "text" | "(" 'text' ("," 'text')* ")"   (a list, for in)

`like` is EnOS's fuzzy match: the text anywhere in the name, case-insensitively (a
`%` in it matches anything). Keywords are case-insensitive. Bounded: an expression
has at most MAX_LENGTH characters and nests at most MAX_DEPTH parentheses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from registry.errors import InvalidArgument
from registry.models import Product

MAX_LENGTH = 2000
MAX_DEPTH = 16
MAX_LIST = 100

Test = Callable[[Product], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>=|\(|\)|,)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
    )""",
    re.VERBOSE,
)
_EXACT: dict[str, Callable[[Product], str]] = {
    "productkey": lambda p: p.productKey,
    "modelid": lambda p: p.settings.modelId,
    "producttype": lambda p: p.settings.productType,
    "dataformat": lambda p: p.settings.dataFormat,
}
_LOCALES: dict[str, str | None] = {
    "productname": None,
    "productname.default": "",
    "productname.zh_cn": "zh_CN",
}
_LOCALES["productname.en_us"] = "en_US"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, op, word
    text: str


def _tokens(expression: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(expression):
        if expression[pos:].strip() == "":
            break
        match = _TOKEN.match(expression, pos)
        if match is None or match.end() == pos:
            raise InvalidArgument(f"expression: cannot read it at {expression[pos : pos + 20]!r}")
        kind = match.lastgroup or "op"
        text = match.group(kind)
        if kind == "string":
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        tokens.append(_Token(kind, text))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def next(self, what: str) -> _Token:
        token = self.peek()
        if token is None:
            raise InvalidArgument(f"expression: ends where {what} was expected")
        self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.lower() == word:
            self.at += 1
            return True
        return False

    def expect(self, op: str) -> None:
        token = self.next(f"{op!r}")
        if token.kind != "op" or token.text != op:
            raise InvalidArgument(f"expression: {op!r} expected, not {token.text!r:.40}")

    def expr(self, depth: int) -> Test:
        if depth > MAX_DEPTH:
            raise InvalidArgument(f"expression: nests deeper than {MAX_DEPTH} parentheses")
        tests = [self.term(depth)]
        while self.keyword("or"):
            tests.append(self.term(depth))
        return tests[0] if len(tests) == 1 else lambda p: any(t(p) for t in tests)

    def term(self, depth: int) -> Test:
        tests = [self.factor(depth)]
        while self.keyword("and"):
            tests.append(self.factor(depth))
        return tests[0] if len(tests) == 1 else lambda p: all(t(p) for t in tests)

    def factor(self, depth: int) -> Test:
        token = self.peek()
        if token is not None and token.kind == "op" and token.text == "(":
            self.at += 1
            test = self.expr(depth + 1)
            self.expect(")")
            return test
        negated = self.keyword("not")
        if self.keyword("exists"):
            self.expect("(")
            tag = self._tag(self.next("productTags.KEY"))
            self.expect(")")
            return (
                (lambda p: tag not in p.settings.productTags)
                if negated
                else (lambda p: tag in p.settings.productTags)
            )
        if negated:
            raise InvalidArgument("expression: 'not' goes only before exists(...)")
        return self.comparison()

    @staticmethod
    def _tag(token: _Token) -> str:
        if token.kind != "word" or not token.text.lower().startswith("producttags."):
            raise InvalidArgument(
                f"expression: exists() takes productTags.KEY, not {token.text!r:.40}"
            )
        return token.text.split(".", 1)[1]

    def comparison(self) -> Test:
        field = self.next("a field")
        if field.kind != "word":
            raise InvalidArgument(f"expression: a field expected, not {field.text!r:.40}")
        name = field.text.lower()
        op = self.next("an operator")
        operator = op.text.lower()
        if name in _EXACT:
            read = _EXACT[name]
            if operator == "=":
                value = self.value()
                return lambda p: read(p) == value
            if operator == "in":
                values = set(self.values())
                return lambda p: read(p) in values
            raise InvalidArgument(f"expression: {field.text} takes = or in, not {op.text!r:.20}")
        if name in _LOCALES:
            locale = _LOCALES[name]
            if operator not in ("like", "="):
                raise InvalidArgument(
                    f"expression: {field.text} takes like or =, not {op.text!r:.20}"
                )
            wanted = self.value()
            return _name_test(locale, wanted, fuzzy=operator == "like")
        if name.startswith("producttags.") and len(name) > len("producttags."):
            tag = field.text.split(".", 1)[1]
            if operator != "=":
                raise InvalidArgument(f"expression: {field.text} takes =, not {op.text!r:.20}")
            value = self.value()
            return lambda p: p.settings.productTags.get(tag) == value
        raise InvalidArgument(
            f"expression: unknown field {field.text!r:.40}; use productKey, modelId,"
            " productType, dataFormat, productName or productTags.KEY"
        )

    def value(self) -> str:
        token = self.next("a quoted value")
        if token.kind != "string":
            raise InvalidArgument(f"expression: a quoted value expected, not {token.text!r:.40}")
        return token.text

    def values(self) -> list[str]:
        self.expect("(")
        values = [self.value()]
        while (token := self.peek()) is not None and token.text == "," and token.kind == "op":
            self.at += 1
            values.append(self.value())
            if len(values) > MAX_LIST:
                raise InvalidArgument(f"expression: an in list has at most {MAX_LIST} values")
        self.expect(")")
        return values


def _name_test(locale: str | None, wanted: str, *, fuzzy: bool) -> Test:
    """EnOS's rules: no locale looks at the default, Chinese and English names; a locale
    at its name, or the default name where the product has none in that locale."""
    pattern = re.compile(
        ".*".join(re.escape(part) for part in wanted.split("%")), re.IGNORECASE | re.DOTALL
    )

    def matches(text: str) -> bool:
        return bool(pattern.search(text)) if fuzzy else text == wanted

    def test(product: Product) -> bool:
        name = product.settings.productName
        if locale is None:
            names = [name.defaultValue, *(name.i18nValue.get(k, "") for k in ("zh_CN", "en_US"))]
        elif locale == "":
            names = [name.defaultValue]
        else:
            names = [name.i18nValue.get(locale) or name.defaultValue]
        return any(matches(n) for n in names if n)

    return test


def compile_expression(expression: str) -> Test:
    """A test on a product; an empty expression matches every product."""
    if len(expression) > MAX_LENGTH:
        raise InvalidArgument(f"expression is longer than {MAX_LENGTH} characters")
    tokens = _tokens(expression)
    if not tokens:
        return lambda p: True
    parser = _Parser(tokens)
    test = parser.expr(0)
    extra = parser.peek()
    if extra is not None:
        raise InvalidArgument(f"expression: unexpected {extra.text!r:.40} (and, or expected)")
    return test
