"""The state a slice starts with: rows before its window that still describe the world at its start.

A slice `--from T` that kept only rows at or after T would forget every cgroup,
process, mount and interface that existed before T, so `cgroup_tree` at a moment
inside the window, `process_tree`, or the first throttle window would answer
differently from the original over the same window. A slice therefore also
carries, from before T, recorded rows as they are (their own times and values,
nothing made up):

- cgroup_events: every row of each cgroup alive at T, since its last birth
  (the rows after its last `removed`; none for a cgroup removed before T);
- processes: every row of each pid alive at T, since its last `exit`;
- namespaces: the rows of those pids, and pid 1's (the host's reference);
- mounts, net_interfaces: the last row of each mount / interface not removed before T;
- cgroup_samples, psi_samples: the last sample of each cgroup / PSI scope before
  T, so the first delta inside the window has its predecessor.

Tables of intervals and single events (syscall_counts, file_opens, psi_events,
...) carry nothing: each row describes its own time only.
"""

from __future__ import annotations

# per table: SQL over the source tape's views, rows before $lo, in (time, seq) order;
# {cols} is the table's declared columns
_SINCE_LAST = """
WITH b AS (SELECT {cols}, row_number() OVER (PARTITION BY {key} ORDER BY {order}) AS rn__
           FROM {table} WHERE ts_ns < $lo),
k AS (SELECT {key}, max(rn__) FILTER (WHERE {gone}) AS gone__, max(rn__) FILTER (WHERE {life}) AS life__
      FROM b GROUP BY ALL)
SELECT b.* EXCLUDE (rn__) FROM b JOIN k USING ({key})
WHERE rn__ > coalesce(gone__, 0) AND (gone__ IS NULL OR life__ > gone__)
ORDER BY {order}
"""
_LAST_ROW = """
SELECT {cols} FROM {table} WHERE ts_ns < $lo
QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order} DESC) = 1 AND {alive}
ORDER BY {order}
"""
_ALIVE_PIDS = _SINCE_LAST.format(cols="pid, event, ts_ns, seq", key="pid", order="ts_ns, seq", table="processes",
                                 gone="event = 'exit'", life="true")

PROLOGUE = {
    "cgroup_events": _SINCE_LAST.format(cols="{cols}", key="hierarchy, cgroup_path", order="ts_ns, seq",
                                        table="cgroup_events", gone="kind = 'removed'",
                                        life="kind IN ('created', 'seen', 'removed')"),
    "processes": _SINCE_LAST.format(cols="{cols}", key="pid", order="ts_ns, seq", table="processes",
                                    gone="event = 'exit'", life="true"),
    "namespaces": "SELECT {cols} FROM namespaces WHERE ts_ns < $lo AND (pid = 1 OR pid IN (SELECT pid FROM ("
                  + _ALIVE_PIDS + "))) ORDER BY ts_ns",
    "mounts": _LAST_ROW.format(cols="{cols}", table="mounts", key="mount_id", order="ts_ns",
                               alive="event <> 'removed'"),
    "net_interfaces": _LAST_ROW.format(cols="{cols}", table="net_interfaces", key="ifname", order="ts_ns",
                                       alive="event <> 'removed'"),
    "cgroup_samples": _LAST_ROW.format(cols="{cols}", table="cgroup_samples", key="hierarchy, cgroup_path",
                                       order="ts_ns", alive="true"),
    "psi_samples": _LAST_ROW.format(cols="{cols}", table="psi_samples", key="scope, resource", order="ts_ns",
                                    alive="true"),
}


def prologue(con, table, lo: int):
    """The carried rows of `table` (a schemas.Table) before `lo`, as an Arrow table, or None."""
    sql = PROLOGUE.get(table.name)
    if sql is None:
        return None
    cols = ", ".join(f'"{c}"' for c in table.column_names)
    rel = con.sql(sql.format(cols=cols), params={"lo": lo})
    return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
