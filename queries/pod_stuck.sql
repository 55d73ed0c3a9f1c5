-- name: pod_stuck
-- description: Pods whose start stopped short: by the tape's end, some container (or the sandbox) never exec'd; the last phase each reached and how long ago.
-- columns: host, pod_uid, pod_name, last_stage, last_stage_ts, waiting_ms
--
-- A pod is stuck when one of its cgroups (the sandbox's or a container's) never
-- saw its entrypoint exec, or when it has a sandbox but no container cgroup yet,
-- or only its pod cgroup. A container that is only created later (an app
-- container after its init containers, an image still being pulled) cannot be
-- known before its cgroup exists: such a pod is not listed.
-- last_stage is the furthest birth phase the pod reached, by time, named as in
-- pod_births with the container it belongs to in parentheses (its name from the
-- `containers` table, else its id's first 12 characters; 'pod' for the pod
-- cgroup, 'sandbox' for the sandbox): cgroup_created, sandbox_created,
-- network_ready, process_attached, populated, exec, pause_exec. Removals are not
-- phases: a container whose start failed and was cleaned up still shows where it
-- stopped. waiting_ms is from last_stage_ts to the tape's end (its last
-- recorder_stats row). Only tapes that recorded processes (lineage or proc) can
-- tell an exec from its absence: on others no pod is listed.
WITH
-- ident, ev: every cgroup event with its pod and container key (queries/_pod_entities.sql)
-- include: pod_entities
-- created, ent, ids, paths, procs, exec: each entity, its processes, its first exec (queries/_pod_procs.sql)
-- include: pod_procs
-- cn ... network: the sandbox and its network (queries/_pod_stages.sql)
-- include: pod_stages
attach AS (
    SELECT v.host, v.pod_uid, v.ckey, v.ts_ns, v.ts
    FROM ev v JOIN ent e USING (host, pod_uid, ckey)
    WHERE v.kind = 'attach' AND v.ts_ns >= e.t0
    UNION ALL
    SELECT p.host, p.pod_uid, p.ckey, p.ts_ns, p.ts
    FROM procs p JOIN ent e USING (host, pod_uid, ckey)
    WHERE p.ts_ns >= e.t0
),
populated AS (
    SELECT v.host, v.pod_uid, v.ckey, v.ts_ns, v.ts
    FROM ev v JOIN ent e USING (host, pod_uid, ckey)
    WHERE v.kind = 'populated' AND v.ts_ns >= e.t0
),
is_sb AS (
    SELECT e.host, e.pod_uid, e.ckey, coalesce(c.container_type = 'sandbox', false) AS sandbox,
           CASE WHEN e.ckey = '' THEN 'pod' WHEN c.container_type = 'sandbox' THEN 'sandbox'
                ELSE coalesce(c.container_name, left(e.ckey, 12)) END AS who
    FROM ent e LEFT JOIN cn c ON c.host = e.host AND c.ckey = e.ckey
),
stages AS (
    SELECT host, pod_uid, ckey, 'cgroup_created' AS stage, t0 AS ts_ns, t0_ts AS ts FROM ent
    UNION ALL SELECT host, pod_uid, ckey, 'process_attached', min(ts_ns), min(ts) FROM attach GROUP BY ALL
    UNION ALL SELECT host, pod_uid, ckey, 'populated', min(ts_ns), min(ts) FROM populated GROUP BY ALL
    UNION ALL SELECT host, pod_uid, ckey, 'exec', ts_ns, ts FROM exec
    UNION ALL SELECT host, pod_uid, ckey, 'network_ready', ts_ns, ts FROM network
),
named AS (
    SELECT s.host, s.pod_uid, s.ts_ns, s.ts,
           CASE WHEN i.sandbox AND s.stage = 'cgroup_created' THEN 'sandbox_created'
                WHEN i.sandbox AND s.stage = 'exec' THEN 'pause_exec' ELSE s.stage END
               || ' (' || i.who || ')' AS stage,
           list_position(['cgroup_created', 'network_ready', 'process_attached', 'populated', 'exec'], s.stage) AS rank
    FROM stages s JOIN is_sb i ON i.host = s.host AND i.pod_uid = s.pod_uid AND i.ckey = s.ckey
),
verdict AS (
    SELECT i.host, i.pod_uid,
           count(*) FILTER (WHERE i.ckey <> '' AND x.ts_ns IS NULL) AS not_execd,
           count(*) FILTER (WHERE i.ckey <> '' AND NOT i.sandbox) AS containers,
           bool_or(i.sandbox) AS has_sandbox
    FROM is_sb i
    LEFT JOIN exec x ON x.host = i.host AND x.pod_uid = i.pod_uid AND x.ckey = i.ckey
    GROUP BY ALL
),
tape_end AS (
    SELECT host, max(ts_ns) AS end_ns FROM recorder_stats GROUP BY ALL
),
with_procs AS (
    SELECT DISTINCT host FROM processes
),
last AS (
    SELECT host, pod_uid, arg_max(stage, (ts_ns, rank, stage)) AS last_stage, max(ts_ns) AS last_ns,
           arg_max(ts, (ts_ns, rank, stage)) AS ts  -- the label breaks ties: the same row on every engine
    FROM named GROUP BY ALL
),
names AS (
    SELECT e.host, e.pod_uid, any_value(c.pod_name) AS pod_name
    FROM ent e JOIN containers c ON c.host = e.host AND c.container_id = e.ckey
    GROUP BY ALL
)
SELECT v.host, v.pod_uid, n.pod_name, l.last_stage, l.ts AS last_stage_ts,
       round((t.end_ns - l.last_ns) / 1e6, 3) AS waiting_ms
FROM verdict v
JOIN with_procs w ON w.host = v.host
JOIN last l ON l.host = v.host AND l.pod_uid = v.pod_uid
LEFT JOIN tape_end t ON t.host = v.host
LEFT JOIN names n ON n.host = v.host AND n.pod_uid = v.pod_uid
WHERE v.not_execd > 0 OR v.containers = 0
ORDER BY v.host, l.last_ns, v.pod_uid;
