"""`--engine spark`: the named queries on Apache Spark, over the same Parquet files.

One source of truth per query: the DuckDB SQL in queries/*.sql is translated to
Spark SQL with sqlglot, after the shared DuckDB macros are inlined (parsed and
substituted as expressions) and the bound parameters turned into literals (as
sqlglot literals, never pasted text). What sqlglot does not map is rewritten here
on the syntax tree, each rule tested by comparing every named query's rows:
- `WITH x AS [NOT] MATERIALIZED` is a DuckDB planner hint: dropped;
- `epoch_us(ts)` -> `unix_micros(ts)`; `make_timestamp(us)` -> `timestamp_micros(us)`;
- unsigned 64-bit ids (cgroup_id is UBIGINT): Spark has no unsigned types and
  reads Parquet UINT_64 as DECIMAL(20,0), which holds every value exactly; results
  are cast back to uint64 so both engines print the same digits;
- nanosecond times stay BIGINT (`ts_ns`); `ts` is a microsecond TIMESTAMP in both,
  computed from each tape's clock pairs as reader.table_select does, with the
  session time zone set to UTC.

Views: each table is one Parquet read over all its files (one file list; Spark's
`_metadata.file_path` joined to a small broadcast table names each row's tape, its
host and its clock offset), so a store of a thousand hosts is one scan per table,
not a thousand-way union.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow as pa

from nodetape.core.errors import QueryError, UserError
from nodetape.schemas import TABLES

_SPARK_TYPES = {
    pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INT", pa.int64(): "BIGINT",
    pa.uint8(): "SMALLINT", pa.uint16(): "INT", pa.uint32(): "BIGINT", pa.uint64(): "DECIMAL(20,0)",
    pa.float32(): "FLOAT", pa.float64(): "DOUBLE", pa.string(): "STRING", pa.bool_(): "BOOLEAN",
}
_SESSION = None


def spark_type(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return _SPARK_TYPES[t]


def session(master: str | None = None):
    """The SparkSession (one per process): local mode unless a master is given (or configured)."""
    global _SESSION
    if _SESSION is not None:
        return _SESSION
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserError("--engine spark: pyspark is not installed (pip install 'nodetape[fleet]')") from None
    from shutil import which

    if not os.environ.get("JAVA_HOME") and which("java") is None:
        raise UserError("--engine spark: no Java runtime (Debian: apt-get install openjdk-17-jre-headless)")
    b = SparkSession.builder.appName("nodetape")
    master = master or os.environ.get("SPARK_MASTER")
    if master:
        b = b.master(master)
    elif not os.environ.get("SPARK_CONF_DIR"):
        # local mode: loopback only, a few shuffle partitions (the default 200 is for clusters)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        b = (b.master("local[*]").config("spark.sql.shuffle.partitions", os.environ.get("NODETAPE_SPARK_PARTITIONS", "4"))
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1"))
    b = (b.config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").config("spark.sql.session.timeZone", "UTC")
         .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
         .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC"))
    _SESSION = b.getOrCreate()
    _SESSION.sparkContext.setLogLevel("ERROR")
    import logging

    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)  # a failing query is our one-line error
    return _SESSION


def _file_key(path) -> str:
    return Path(path).absolute().as_posix()


def _offset_expr(column: str, tapes, col_idx: str = "_tape") -> str:
    """realtime - boottime for `column`: clockmap's one rule, in Spark's quoting."""
    from nodetape.tape import clockmap

    return clockmap.offset_sql_by_tape(f"`{column}`", [t.clock_pairs for t in tapes], col_idx, "_off")


def _columns(t, present: set, tapes) -> list[str]:
    exprs = []
    for c in t.columns:
        st = spark_type(c.type)
        exprs.append(f"CAST(`{c.name}` AS {st}) AS `{c.name}`" if c.name in present else f"CAST(NULL AS {st}) AS `{c.name}`")
    for tc in t.time_columns:
        if tc in present:
            exprs.append(f"timestamp_micros(div(`{tc}` + {_offset_expr(tc, tapes)}, 1000)) AS `{tc[:-3]}`")
        else:
            exprs.append(f"CAST(NULL AS TIMESTAMP) AS `{tc[:-3]}`")
    return [*exprs, "host"]


def _compacted_df(spark, tapes, t):
    """The table's compacted files (store/compacted.py) joined to their selected sources, or None."""
    from pyspark.sql import functions as F

    from nodetape.store import compacted as cz
    from nodetape.store.views import host_filter, srcs_rows

    paths = [str(f.path) for f in getattr(tapes, "compacted", {}).get(t.name, [])]
    if not paths:
        return None
    smap = spark.createDataFrame(srcs_rows(tapes), "_src BIGINT, _tape INT, host STRING, _off BIGINT")
    df = spark.read.option("mergeSchema", "true").parquet(*paths)
    hosts = host_filter(tapes, t.name)
    if hosts:
        df = df.where(f"{cz.HOST_COL} IN ({hosts})")
    return df.join(F.broadcast(smap), df[cz.SRC_COL] == smap["_src"])


def register_views(spark, tapes) -> None:
    """One temp view per table over every tape's parts (and a store's compacted files), with the DuckDB
    views' columns."""
    files = [(_file_key(p), i, t.host, t.clock_pairs[0][1]) for i, t in enumerate(tapes)
             for parts in t.parts.values() for p in parts]
    fmap = spark.createDataFrame(files, "_file STRING, _tape INT, host STRING, _off BIGINT") if files else None
    from pyspark.sql import functions as F

    for t in TABLES:
        dfs = []
        paths = [str(p) for tape in tapes for p in tape.parts[t.name]]
        if paths:
            df = spark.read.option("mergeSchema", "true").parquet(*paths)
            df = df.withColumn("_file", F.regexp_replace(F.col("_metadata.file_path"), "^file:(//)?", ""))
            df = df.join(F.broadcast(fmap), "_file")
            dfs.append(df.selectExpr(*_columns(t, set(df.columns), tapes)))
        cdf = _compacted_df(spark, tapes, t)
        if cdf is not None:
            dfs.append(cdf.selectExpr(*_columns(t, set(cdf.columns), tapes)))
        if not dfs:
            dfs.append(spark.range(0).selectExpr("CAST(NULL AS STRING) AS host").selectExpr(*_columns(t, set(), tapes)))
        view = dfs[0]
        for other in dfs[1:]:
            view = view.unionByName(other)
        view.createOrReplaceTempView(t.name)


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


def _to_arrow(df) -> pa.Table:
    """Spark's result as Arrow, typed as DuckDB's: DECIMAL(20,0) ids back to uint64, naive UTC timestamps."""
    table = df.toArrow()
    cols, fields = [], []
    for f, col in zip(table.schema, table.columns):
        t = f.type
        if pa.types.is_decimal(t) and t.scale == 0 and t.precision == 20:
            col, t = col.cast(pa.uint64()), pa.uint64()
        elif pa.types.is_timestamp(t) and t.tz is not None:
            t = pa.timestamp(t.unit)
            col = col.cast(t)
        cols.append(col)
        fields.append(pa.field(f.name, t))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def run_sql(tapes, text: str, params: dict | None = None, *, master: str | None = None,
            translate_sql: bool = True) -> pa.Table:
    """Run DuckDB-dialect SQL over the tapes on Spark; a failing statement is a QueryError."""
    spark = session(master)
    register_views(spark, tapes)
    spark_sql = translate(text, params) if translate_sql else text
    try:
        return _to_arrow(spark.sql(spark_sql))
    except Exception as e:  # pyspark raises AnalysisException, ParseException, Py4JJavaError ...
        if type(e).__name__ in ("AnalysisException", "ParseException", "SparkRuntimeException",
                                "ArithmeticException", "NumberFormatException", "IllegalArgumentException"):
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise QueryError(f"Spark SQL error: {first}") from None
        raise


def query(tapes, name: str, params: dict[str, str] | None = None, *, master: str | None = None) -> pa.Table:
    from nodetape.queries import get

    q = get(name)
    return run_sql(tapes, q.sql, q.bind(params or {}), master=master)
