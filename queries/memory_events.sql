-- name: memory_events
-- description: OOM, OOM kills and memory.high / memory.max events per cgroup, with the memory state sampled just before.
-- columns: ts, cgroup_path, pod_uid, container_id, kind, count, memory_before, memory_max, pids_before, sample_age_ms, host
--
-- Rows of cgroup_events with kind oom, oom_kill, memory_high or memory_max
-- (count: how much the memory.events counter grew). memory_before, memory_max
-- and pids_before come from the last cgroup_samples row of the same cgroup path
-- at or before the event that has memory_current (any hierarchy: 'memory' on v1,
-- 'unified' on v2); sample_age_ms says how old that sample was. NULL when no
-- sample preceded the event.
WITH
ev AS (
    SELECT host, ts_ns, ts, seq, cgroup_path, pod_uid, container_id, kind, count
    FROM cgroup_events
    WHERE kind IN ('oom', 'oom_kill', 'memory_high', 'memory_max')
),
-- one event per cgroup and moment: v1 and v2 hierarchies may both report it
ev1 AS (
    SELECT host, ts_ns, any_value(ts) AS ts, min(seq) AS seq, cgroup_path, any_value(pod_uid) AS pod_uid,
           any_value(container_id) AS container_id, kind, max(count) AS count
    FROM ev GROUP BY host, ts_ns, cgroup_path, kind
),
mem AS (
    SELECT host, cgroup_path, ts_ns, memory_current, memory_max, pids_current
    FROM cgroup_samples WHERE memory_current IS NOT NULL
)
SELECT e.ts, e.cgroup_path, e.pod_uid, e.container_id, e.kind, e.count,
       m.memory_current AS memory_before,
       m.memory_max,
       m.pids_current AS pids_before,
       round((e.ts_ns - m.ts_ns) / 1e6, 3) AS sample_age_ms,
       e.host
FROM ev1 e
ASOF LEFT JOIN mem m ON m.host = e.host AND m.cgroup_path = e.cgroup_path AND m.ts_ns <= e.ts_ns
ORDER BY e.host, e.ts_ns, e.seq;
