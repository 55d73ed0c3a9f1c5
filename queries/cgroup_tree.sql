-- name: cgroup_tree
-- description: The cgroup tree as it stood at one moment, per hierarchy, with each cgroup's last sampled state.
-- param: at = end  (the moment: end, start, +DURATION after the tape's first cgroup row (e.g. +5s), or an ISO wall time)
-- param: hierarchy = %  (unified, cpu, memory, ... or a LIKE pattern)
-- columns: hierarchy, cgroup_path, depth, tree, pod_uid, container_id, qos_class, created, populated, nr_procs, memory_current, memory_max, quota_cores, host
--
-- A cgroup is in the tree when its last lifecycle row (seen, created, removed)
-- at or before the moment is not 'removed'. created is set when its creation was
-- recorded (born during the tape). populated is the last populated/unpopulated
-- row at or before the moment (NULL when none). nr_procs, memory_* and
-- quota_cores come from the cgroup's last sample at or before the moment.
WITH
bounds AS (
    SELECT host, min(ts) AS t_min, max(ts) AS t_max
    FROM (SELECT host, ts FROM cgroup_events UNION ALL SELECT host, ts FROM cgroup_samples)
    GROUP BY host
),
moment AS (
    SELECT host,
           coalesce(CASE WHEN $at = 'end' THEN t_max
                         WHEN $at = 'start' THEN t_min
                         WHEN starts_with($at, '+') THEN t_min + TRY_CAST(substr($at, 2) AS INTERVAL)
                         ELSE TRY_CAST($at AS TIMESTAMP) END,
                    error('cgroup_tree: bad --param at=' || $at || ' (use end, start, +5s or an ISO time)')) AS at
    FROM bounds
),
life AS (
    SELECT e.host, e.hierarchy, e.cgroup_path,
           arg_max(e.kind, (e.ts_ns, e.seq)) AS last_kind,
           arg_max(e.ts, (e.ts_ns, e.seq)) FILTER (WHERE e.kind = 'created') AS created,
           arg_max(e.kind, (e.ts_ns, e.seq)) FILTER (WHERE e.kind IN ('populated', 'unpopulated')) AS pop,
           any_value(e.pod_uid) AS pod_uid, any_value(e.container_id) AS container_id,
           any_value(e.qos_class) AS qos_class,
           any_value(m.at) AS at
    FROM cgroup_events e JOIN moment m ON m.host = e.host AND e.ts <= m.at
    WHERE e.hierarchy LIKE $hierarchy
      AND e.kind IN ('seen', 'created', 'removed', 'populated', 'unpopulated')
    GROUP BY ALL
),
alive AS (
    SELECT * FROM life WHERE last_kind IN ('seen', 'created', 'populated', 'unpopulated')
),
samp AS (
    SELECT host, hierarchy, cgroup_path, ts, nr_procs, memory_current, memory_max, cpu_quota_usec, cpu_period_usec
    FROM cgroup_samples WHERE hierarchy LIKE $hierarchy
)
SELECT a.hierarchy,
       a.cgroup_path,
       len(string_split(trim(a.cgroup_path, '/'), '/')) - (a.cgroup_path = '/')::INT AS depth,
       repeat('  ', len(string_split(trim(a.cgroup_path, '/'), '/')) - (a.cgroup_path = '/')::INT)
           || CASE WHEN a.cgroup_path = '/' THEN '/' ELSE string_split(a.cgroup_path, '/')[-1] END AS tree,
       a.pod_uid, a.container_id, a.qos_class,
       a.created,
       CASE a.pop WHEN 'populated' THEN true WHEN 'unpopulated' THEN false END AS populated,
       s.nr_procs, s.memory_current, s.memory_max,
       round(s.cpu_quota_usec / s.cpu_period_usec, 4) AS quota_cores,
       a.host
FROM alive a
ASOF LEFT JOIN samp s ON s.host = a.host AND s.hierarchy = a.hierarchy AND s.cgroup_path = a.cgroup_path AND s.ts <= a.at
ORDER BY a.host, a.hierarchy, string_split(trim(a.cgroup_path, '/'), '/');
