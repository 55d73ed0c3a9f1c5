"""`--engine spark`: the named queries on Apache Spark, over the same Parquet files.

One source of truth per query: the DuckDB SQL in queries/*.sql, translated to
Spark SQL by nodetape/spark_sql.py (sqlglot, plus the rewrites it does not do).
Types:
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
from pathlib import Path

import pyarrow as pa

from nodetape.core.errors import QueryError, UserError
from nodetape.schemas import TABLES
from nodetape.spark_sql import translate

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
