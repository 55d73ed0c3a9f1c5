-- name: process_tree
-- description: Every process the tape saw, as a tree (parent before children): when it forked, exec'd and exited, its binary and cgroup.
-- param: root = 0  (only the subtree under this pid; 0 for every tree)
-- columns: pid, ppid, depth, tree, comm, filename, cgroup_path, pod_uid, container_id, started, exec_ts, exit_ts, exit_code, exit_signal, sources, host
--
-- One row per process (thread group): rows about other threads are folded into
-- their process. The parent is the forking process (eBPF lineage) or the PPid a
-- /proc scan read. comm and filename are the latest known (after the last exec).
-- exit_code / exit_signal decode the kernel's status (code << 8 | signal).
-- The cgroup is the 'unified' path of the task's cgroup2 id, or the path a /proc
-- scan read. Caveat: a pid reused within one tape shows as one process.
WITH RECURSIVE
names AS (
    SELECT host, cgroup_id, arg_max(cgroup_path, ts_ns) AS cgroup_path
    FROM cgroup_events WHERE hierarchy = 'unified' AND cgroup_id IS NOT NULL
    GROUP BY ALL
),
nodes AS (
    SELECT host, coalesce(tgid, pid) AS pid,
           arg_min(CASE WHEN event = 'fork' THEN coalesce(parent_tgid, ppid) ELSE ppid END, ts_ns)
               FILTER (WHERE event IN ('fork', 'seen')) AS ppid,
           min(ts) FILTER (WHERE event IN ('fork', 'seen')) AS started,
           max(ts) FILTER (WHERE event = 'exec') AS exec_ts,
           arg_max(filename, ts_ns) FILTER (WHERE event IN ('exec', 'seen') AND filename IS NOT NULL) AS filename,
           arg_max(comm, ts_ns) FILTER (WHERE comm IS NOT NULL) AS comm,
           min(ts) FILTER (WHERE event = 'exit') AS exit_ts,
           arg_min(exit_code, ts_ns) FILTER (WHERE event = 'exit') AS status,
           arg_max(cgroup_id, ts_ns) FILTER (WHERE cgroup_id IS NOT NULL) AS cgroup_id,
           arg_max(cgroup_path, ts_ns) FILTER (WHERE cgroup_path IS NOT NULL) AS seen_path,
           string_agg(DISTINCT source, ',' ORDER BY source) AS sources
    FROM processes
    WHERE tgid IS NULL OR pid = tgid
    GROUP BY host, coalesce(tgid, pid)
),
tree AS (
    -- roots: processes whose parent the tape never saw
    SELECT n.host, n.pid, 0 AS depth, [n.pid] AS sort_key
    FROM nodes n
    WHERE ($root = 0 AND (n.ppid IS NULL OR n.ppid = n.pid
                          OR NOT EXISTS (SELECT 1 FROM nodes p WHERE p.host = n.host AND p.pid = n.ppid)))
       OR n.pid = $root
    UNION ALL
    SELECT c.host, c.pid, t.depth + 1, list_append(t.sort_key, c.pid)
    FROM tree t JOIN nodes c ON c.host = t.host AND c.ppid = t.pid AND c.pid <> t.pid
    WHERE t.depth < 64  -- a reused pid could make a cycle
)
SELECT n.pid, n.ppid, t.depth,
       repeat('  ', t.depth) || coalesce(n.comm, '?') AS tree,
       n.comm, n.filename,
       coalesce(nm.cgroup_path, n.seen_path) AS cgroup_path,
       cs.pod_uid, cs.container_id,
       n.started, n.exec_ts, n.exit_ts,
       n.status >> 8 AS exit_code,
       nullif(n.status & 127, 0) AS exit_signal,
       n.sources,
       n.host
FROM tree t
JOIN nodes n USING (host, pid)
LEFT JOIN names nm ON nm.host = n.host AND nm.cgroup_id = n.cgroup_id
LEFT JOIN (SELECT DISTINCT host, cgroup_path, pod_uid, container_id FROM cgroup_events WHERE pod_uid IS NOT NULL) cs
       ON cs.host = n.host AND cs.cgroup_path = coalesce(nm.cgroup_path, n.seen_path)
ORDER BY t.host, t.sort_key;
