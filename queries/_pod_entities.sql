-- Shared CTEs of the pod queries (pod_births, pod_startup, pod_stuck): not a named
-- query (its name starts with '_'); a query's line `-- include: pod_entities`
-- is replaced by this text (below this comment) when the catalog loads it.
--
-- Kubernetes identity per path, from any row that carries it: a source that does
-- not parse paths (the cgroup tracepoints) still lines up by path. Only paths that
-- some cgroup_events row names without a pod need one; cgroup_samples (the bigger
-- table) is read for those paths only.
ident AS (
    SELECT DISTINCT host, cgroup_path, pod_uid, coalesce(container_id, '') AS ckey
    FROM cgroup_events WHERE pod_uid IS NOT NULL
    UNION
    SELECT DISTINCT host, cgroup_path, pod_uid, coalesce(container_id, '') AS ckey
    FROM cgroup_samples
    WHERE pod_uid IS NOT NULL
      AND cgroup_path IN (SELECT cgroup_path FROM cgroup_events WHERE pod_uid IS NULL)
),
-- not materialized: each consumer scans cgroup_events again with its own filters (kind, hierarchy)
-- pushed into the scan; kept whole (~0.7 GB of strings at 100M rows) it set pod_births' peak RSS
-- (2.3 GB -> 1.7 GB, same CPU time)
ev AS NOT MATERIALIZED (
    SELECT host, ts_ns, ts, seq, source, kind, hierarchy, cgroup_path, cgroup_id, pid, comm,
           pod_uid, coalesce(container_id, '') AS ckey
    FROM cgroup_events WHERE pod_uid IS NOT NULL
    UNION ALL
    SELECT c.host, c.ts_ns, c.ts, c.seq, c.source, c.kind, c.hierarchy, c.cgroup_path, c.cgroup_id, c.pid, c.comm,
           i.pod_uid, i.ckey
    FROM cgroup_events c
    JOIN (SELECT host, cgroup_path, any_value(pod_uid) AS pod_uid, any_value(ckey) AS ckey FROM ident GROUP BY ALL) i
      ON i.host = c.host AND i.cgroup_path = c.cgroup_path
    WHERE c.pod_uid IS NULL
),
