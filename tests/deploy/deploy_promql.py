"""Just enough PromQL reading for the dashboard tests: which metrics and labels a query names.

Syntax is promtool's business (the tests run ``promtool check rules`` on every query); this
only finds the vector selectors (``name{label="..."}``) and the grouping labels
(``by (...)``, ``without (...)``, ``on (...)``, ``ignoring (...)``) of a valid expression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Grafana's variables, replaced by values that keep the query valid PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<matchers>\{[^}]*\})
  | (?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+)(?:ms|s|m|h|d|w|y)?)
  | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<other>\S)
    """,
    re.VERBOSE,
)
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*")


@dataclass
class Query:
    selectors: list[tuple[str, set[str]]] = field(default_factory=list)  # (metric, labels)
    grouping: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {name for name, _ in self.selectors}


def substitute(expr: str, variables: dict[str, str]) -> str:
    """The query with Grafana's variables (and the dashboard's own) replaced."""
    for name in sorted({**GRAFANA_VARIABLES, **variables}, key=len, reverse=True):
        expr = expr.replace(name, {**GRAFANA_VARIABLES, **variables}[name])
    return expr


def read(expr: str) -> Query:
    """The selectors and grouping labels of a PromQL expression."""
    tokens = [
        (m.lastgroup or "", m.group()) for m in _TOKEN.finditer(expr) if m.group().strip() != ""
    ]
    query = Query()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "name" and text in GROUPING:
            if following[1] == "(":
                j = i + 2
                while j < len(tokens) and tokens[j][1] != ")":
                    if tokens[j][0] == "name":
                        query.grouping.add(tokens[j][1])
                    j += 1
                i = j + 1
                continue
        elif kind == "name" and (following[1] == "(" or text in AGGREGATIONS or text in KEYWORDS):
            pass  # a function, an aggregation or a keyword
        elif kind == "name":
            labels: set[str] = set()
            if following[0] == "matchers":
                labels = set(_MATCHER.findall(following[1]))
                i += 1
            query.selectors.append((text, labels))
        elif kind == "matchers":
            # A selector without a metric name: {__name__="..."}.
            names = re.findall(r'__name__\s*=\s*"([^"]+)"', text)
            query.selectors.extend((n, set(_MATCHER.findall(text)) - {"__name__"}) for n in names)
        i += 1
    return query
