"""DuckDB SQL -> Spark SQL: the translation `--engine spark` runs every named query through.

The DuckDB SQL in queries/*.sql is translated to Spark SQL with sqlglot, after the
shared DuckDB macros are inlined (parsed and substituted as expressions) and the
bound parameters turned into literals (as sqlglot literals, never pasted text).
What sqlglot does not map is rewritten here on the syntax tree, each rule tested by
comparing every named query's rows on both engines (tests/fleet/test_spark_engine.py);
docs/fleet.md lists the rules.
"""

from __future__ import annotations

import re

from nodetape.core.errors import QueryError


def _macros() -> dict:
    """name -> (parameters, body) of the DuckDB macros the named queries may use."""
    try:
        from nodetape.queries.macros import MACROS
    except ImportError:
        return {}
    return dict(MACROS)


def _inline_macros(tree, macros: dict):
    import sqlglot
    from sqlglot import exp

    if not macros:
        return tree
    bodies = {n.lower(): (args, sqlglot.parse_one(body, read="duckdb")) for n, (args, body) in macros.items()}

    def sub(node):
        name = node.name.lower() if isinstance(node, exp.Anonymous) else None
        if name in bodies:
            args, body = bodies[name]
            given = dict(zip(args, node.expressions))
            new = body.copy().transform(
                lambda n: exp.Paren(this=given[n.name].copy()) if isinstance(n, exp.Column) and n.name in given
                and not n.table else n)
            return exp.Paren(this=new)
        return node

    for _ in range(4):  # a macro may call another
        tree = tree.transform(sub)
    return tree


def _literal(value):
    from sqlglot import exp

    if isinstance(value, bool) or value is None:
        raise QueryError(f"--engine spark: cannot bind parameter value {value!r}")
    if isinstance(value, (int, float)):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


def _bind(node, params: dict):
    from sqlglot import exp

    if isinstance(node, (exp.Placeholder, exp.Parameter)):
        name = node.name if isinstance(node, exp.Placeholder) else node.this.name
        if name not in params:
            raise QueryError(f"--engine spark: parameter ${name} is not bound")
        return _literal(params[name])
    return node


def _rewrite(node):
    from sqlglot import exp

    if isinstance(node, exp.CTE) and node.args.get("materialized") is not None:
        node.set("materialized", None)
    if isinstance(node, exp.Anonymous):
        return _rewrite_call(node)
    if isinstance(node, exp.Literal) and not node.is_string and re.search(r"[.eE]", node.this):
        # DuckDB divides DECIMAL literals as DOUBLE; Spark would keep DECIMAL (and print 0.28 as 0.28000)
        return exp.Cast(this=node.copy(), to=exp.DataType.build("DOUBLE"))
    if isinstance(node, exp.Window) and isinstance(node.this, (exp.RowNumber, exp.Anonymous)) \
            and (isinstance(node.this, exp.RowNumber) or node.this.name.lower() in ("rank", "dense_rank")):
        if not node.args.get("order"):
            # DuckDB numbers rows in scan order; Spark wants an order: any constant one is as arbitrary
            node.set("order", exp.Order(expressions=[exp.Ordered(this=exp.Literal.number(1))]))
        return exp.Cast(this=node.copy(), to=exp.DataType.build("BIGINT"))  # DuckDB's BIGINT, not Spark's INT
    if isinstance(node, exp.Filter) and isinstance(node.this, exp.GroupConcat):
        return _string_agg(node.this, node.expression.this)
    if isinstance(node, exp.GroupConcat) and not isinstance(node.parent, exp.Filter):
        return _string_agg(node)
    if isinstance(node, exp.Join) and str(node.args.get("method") or "").upper() == "ASOF":
        return _asof_join(node)
    if isinstance(node, exp.Bracket) and len(node.expressions) == 1 and isinstance(node.expressions[0], exp.Neg) \
            and isinstance(node.expressions[0].this, exp.Literal):
        # DuckDB's list[-1] is the last element (sqlglot holds it 0-based, as -2); Spark: element_at(list, -1)
        n = int(node.expressions[0].this.this) - 1
        return exp.Anonymous(this="try_element_at", expressions=[node.this.copy(), exp.Literal.number(-n)])
    if isinstance(node, exp.Bracket) and len(node.expressions) == 1 and not isinstance(node.expressions[0], exp.Literal) \
            and not isinstance(node.expressions[0], exp.Neg):
        # DuckDB's list[i] counts from 1 and sqlglot moves only literal indexes: element_at counts from 1 too
        # (a replaced node's children are not visited again: rewrite them here)
        idx = exp.Cast(this=node.expressions[0].transform(_rewrite), to=exp.DataType.build("INT"))
        return exp.Anonymous(this="element_at", expressions=[node.this.transform(_rewrite), idx])
    if isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Order):
        return _ordered_list(node)
    if isinstance(node, exp.Length):
        # DuckDB's len/length are BIGINT, Spark's INT; len of a list is Spark's size
        fn = "size" if isinstance(node.this, exp.Split) else "length"
        return exp.Cast(this=exp.Anonymous(this=fn, expressions=[node.this.copy()]), to=exp.DataType.build("BIGINT"))
    if isinstance(node, (exp.ArgMax, exp.ArgMin)) and isinstance(node.expression, exp.Tuple):
        node.set("expression", exp.Anonymous(this="struct", expressions=[e.copy() for e in node.expression.expressions]))
    return node


def _asof_join(join):
    """`a ASOF [LEFT] JOIN b m ON m.k = a.k AND m.t <= a.t` -> a range join on [m.t, next m.t).

    Each row of b covers the times from its own to the next one of the same keys
    (lead over the equality columns), so each left row meets at most one: the
    latest at or before it, as DuckDB's ASOF picks. Only that shape is accepted.
    """
    from sqlglot import exp

    right = join.this
    alias = right.alias_or_name
    conds = list(join.args["on"].flatten()) if isinstance(join.args["on"], exp.And) else [join.args["on"]]
    keys, ineq = [], None
    for c in conds:
        if isinstance(c, exp.EQ):
            keys.append(c.this if c.this.table == alias else c.expression)
        elif isinstance(c, (exp.LTE, exp.GTE)) and ineq is None:
            ineq = c
        else:
            raise QueryError(f"--engine spark: cannot translate this ASOF join condition: {c.sql()}")
    if ineq is None:
        raise QueryError("--engine spark: an ASOF join needs one inequality")
    mine, theirs = (ineq.this, ineq.expression) if isinstance(ineq, exp.LTE) else (ineq.expression, ineq.this)
    if mine.table != alias:
        raise QueryError("--engine spark: ASOF join inequality must be `right.t <= left.t`")
    part = ", ".join(k.name for k in keys)
    inner = exp.select("*", f"lead({mine.name}) OVER (PARTITION BY {part} ORDER BY {mine.name}) AS _asof_next") \
        .from_(exp.Table(this=right.this.copy()))
    nxt = exp.column("_asof_next", table=alias)
    extra = exp.or_(exp.Is(this=nxt.copy(), expression=exp.Null()), exp.GT(this=nxt, expression=theirs.copy()))
    join.set("this", exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias))))
    join.set("on", exp.and_(join.args["on"].copy(), extra))
    join.set("method", None)
    return join


def _string_agg(node, where=None):
    """DuckDB `string_agg([DISTINCT] x, sep ORDER BY k... ) [FILTER (WHERE c)]` in Spark terms.

    Spark's LISTAGG(DISTINCT) WITHIN GROUP fails beside other aggregates (a
    ClassCastException in Spark 4), so: collect the (keys, x) of non-NULL x, sort
    them with a comparator on the keys, join the x; no rows is NULL, as in DuckDB.
    """
    import sqlglot
    from sqlglot import exp

    order, this = _order_of(node.this)
    distinct = isinstance(this, exp.Distinct)
    value = this.expressions[0] if distinct else this
    sep = node.args.get("separator") or exp.Literal.string(",")
    agg, sorted_ = _sorted_collect(order, value, skip_null=True, distinct=distinct, where=where)
    text = (f"CASE WHEN size({agg}) = 0 THEN NULL ELSE array_join(transform({sorted_}, e -> CAST(e.v AS STRING)), "
            f"{sep.sql('spark')}) END")
    return sqlglot.parse_one(text, read="spark")


def _ordered_list(node):
    """DuckDB `list(x ORDER BY k...)` in Spark terms: collect_list keeps no order (and drops NULLs,
    which DuckDB keeps), so collect (keys, x) structs, sort them on the keys, keep the x."""
    import sqlglot

    order, value = _order_of(node.this)
    _, sorted_ = _sorted_collect(order, value, skip_null=False)
    return sqlglot.parse_one(f"transform({sorted_}, e -> e.v)", read="spark")


def _order_of(this):
    from sqlglot import exp

    if isinstance(this, exp.Order):
        return [(o.this, bool(o.args.get("desc"))) for o in this.expressions], this.this
    return [], this


def _sorted_collect(order, value, *, skip_null: bool, distinct: bool = False, where=None) -> tuple[str, str]:
    """(the collect aggregate, that array sorted on the `order` keys) as Spark SQL text; each item is
    a struct of the keys k0.. and the value v (no keys: sorted on v)."""
    fields = [f"{k.sql('spark')} AS k{i}" for i, (k, _) in enumerate(order)] + [f"{value.sql('spark')} AS v"]
    item = f"named_struct({', '.join(_named(f) for f in fields)})"
    if skip_null:
        item = f"CASE WHEN ({value.sql('spark')}) IS NOT NULL THEN {item} END"
    agg = f"{'collect_set' if distinct else 'collect_list'}({item})"
    if where is not None:
        agg += f" FILTER (WHERE {where.sql('spark')})"
    cmp = " ".join(f"WHEN l.k{i} < r.k{i} THEN {1 if d else -1} WHEN l.k{i} > r.k{i} THEN {-1 if d else 1}"
                   for i, (_, d) in enumerate(order))
    cmp += " WHEN l.v < r.v THEN -1 WHEN l.v > r.v THEN 1" if not order else ""
    return agg, f"array_sort({agg}, (l, r) -> CASE {cmp} ELSE 0 END)"


def _named(field: str) -> str:
    expr, _, name = field.rpartition(" AS ")
    return f"'{name}', {expr}"


def _rewrite_call(node):
    """DuckDB functions Spark spells differently, same meaning."""
    from sqlglot import exp

    fn, args = node.name.lower(), node.expressions
    if fn == "epoch_us" and len(args) == 1:
        return exp.Anonymous(this="unix_micros", expressions=args)
    if fn == "make_timestamp" and len(args) == 1:
        return exp.Anonymous(this="timestamp_micros", expressions=args)
    if fn == "to_microseconds" and len(args) == 1:
        # an interval of N microseconds: exact as DECIMAL seconds
        secs = exp.Div(this=exp.Cast(this=args[0].copy(), to=exp.DataType.build("DECIMAL(20,0)")),
                       expression=exp.Literal.number(1000000))
        return exp.Anonymous(this="make_dt_interval", expressions=[exp.Literal.number(0)] * 3 + [secs])
    if fn == "error" and len(args) == 1:
        return exp.Anonymous(this="raise_error", expressions=args)
    if fn == "list_position" and len(args) == 2:
        return exp.Anonymous(this="array_position", expressions=args)
    return node


def translate(sql: str, params: dict | None = None) -> str:
    """DuckDB SQL (a named query's) -> Spark SQL, with the parameters bound as literals."""
    import sqlglot
    from sqlglot.errors import ParseError

    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except ParseError as e:
        raise QueryError(f"--engine spark: cannot parse the query ({str(e).splitlines()[0]})") from None
    tree = _inline_macros(tree, _macros())
    tree = tree.transform(lambda n: _bind(n, params or {}))
    tree = tree.transform(_rewrite)
    return tree.sql(dialect="spark", comments=False)
