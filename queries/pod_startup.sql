-- name: pod_startup
-- description: One row per pod started during the tape: when its sandbox, its network and its containers were up, in ms from the pod's start.
-- columns: host, pod_uid, pod_name, pod_namespace, sandbox_ms, network_ms, containers, first_exec_ms, total_ms
--
-- The pod's start is the birth of its first cgroup: the pod cgroup the kubelet
-- makes before it asks the runtime for a sandbox, else the sandbox's own cgroup.
-- Each *_ms is the time from there to the end of a phase (phases overlap and their
-- order differs between runtimes: containerd wires the network before it starts
-- the sandbox, so durations are offsets from one origin, not a chain):
--   sandbox_ms     the sandbox's pause process exec'd (pod_births' pause_exec)
--   network_ms     the pod network got its interface (network_ready: the host side
--                  of the pod's veth pair appearing); NULL for hostNetwork pods and
--                  without the net source
--   containers     how many containers (init and app, not the sandbox) had a cgroup
--   first_exec_ms  the first container's entrypoint exec'd
--   total_ms       every one of those containers had exec'd: the pod is started;
--                  NULL while one has not (see pod_stuck)
-- The sandbox is known from the runtime source's `containers` rows; without them
-- (a pod started by hand with runc) every child cgroup counts as a container and
-- sandbox_ms, pod_name and pod_namespace are NULL. Stages and their sources are
-- those of pod_births (eBPF preferred, else inotify and /proc scans).
WITH
-- ident, ev: every cgroup event with its pod and container key (queries/_pod_entities.sql)
-- include: pod_entities
created AS (
    SELECT host, pod_uid, ckey, source, ts_ns, ts, seq, hierarchy, cgroup_path
    FROM ev WHERE kind = 'created'
),
ent AS (
    SELECT host, pod_uid, ckey,
           bool_or(source = 'ebpf') AS by_ebpf,
           arg_min(ts_ns, (source <> 'ebpf', ts_ns, seq)) AS t0,
           arg_min(ts, (source <> 'ebpf', ts_ns, seq)) AS t0_ts,
           arg_min(hierarchy, (source <> 'ebpf', ts_ns, seq)) AS first_hierarchy,
           arg_min(cgroup_path, (source <> 'ebpf', ts_ns, seq)) AS cgroup_path,
           string_agg(DISTINCT hierarchy, ', ' ORDER BY hierarchy) AS hierarchies,
           count(DISTINCT hierarchy) AS n_hierarchies
    FROM created
    GROUP BY ALL
),
ids AS (
    SELECT DISTINCT e.host, e.pod_uid, e.ckey, v.cgroup_id
    FROM ent e JOIN ev v USING (host, pod_uid, ckey)
    WHERE v.hierarchy = 'unified' AND v.cgroup_id IS NOT NULL AND v.kind IN ('created', 'seen')
),
paths AS (
    SELECT DISTINCT e.host, e.pod_uid, e.ckey, v.cgroup_path
    FROM ent e JOIN ev v USING (host, pod_uid, ckey)
),
procs AS (
    SELECT i.host, i.pod_uid, i.ckey, p.ts_ns, p.ts, p.seq, p.source, p.event, p.pid, p.tgid,
           p.comm, p.filename
    FROM processes p JOIN ids i ON p.host = i.host AND p.cgroup_id = i.cgroup_id
    WHERE p.source = 'ebpf'
    UNION ALL
    SELECT pa.host, pa.pod_uid, pa.ckey, p.ts_ns, p.ts, p.seq, p.source, p.event, p.pid, p.tgid,
           p.comm, p.filename
    FROM processes p JOIN paths pa ON p.host = pa.host AND p.cgroup_path = pa.cgroup_path
    WHERE p.source <> 'ebpf'
),
exec_cand AS (
    SELECT p.host, p.pod_uid, p.ckey, p.ts_ns, p.ts, p.seq,
           CASE WHEN p.source = 'ebpf' THEN 0 ELSE 1 END AS pref,
           CASE WHEN p.source = 'ebpf'
                THEN 'pid ' || p.pid || ' exec ' || coalesce(p.filename, '?') || coalesce(' (comm ' || p.comm || ')', '') || ' via ebpf'
                ELSE 'pid ' || p.pid || ' runs ' || coalesce(p.filename, '?') || coalesce(' (comm ' || p.comm || ')', '')
                     || ' via /proc scan (exec at or before)' END AS detail
    FROM procs p JOIN ent e USING (host, pod_uid, ckey)
    WHERE p.ts_ns >= e.t0
      AND ((p.source = 'ebpf' AND p.event = 'exec')
           OR (p.source <> 'ebpf' AND p.event = 'seen' AND coalesce(p.comm, '') NOT LIKE 'runc%'))
),
exec AS (
    SELECT host, pod_uid, ckey, 'exec' AS stage,
           arg_min(ts_ns, (pref, ts_ns, seq)) AS ts_ns, arg_min(ts, (pref, ts_ns, seq)) AS ts,
           arg_min(detail, (pref, ts_ns, seq)) AS detail
    FROM exec_cand GROUP BY ALL
),
cn AS (
    SELECT host, container_id AS ckey, any_value(container_type) AS container_type,
           any_value(container_name) AS container_name
    FROM containers GROUP BY ALL
),
sb AS (
    SELECT e.host, e.pod_uid, coalesce(min(e.t0) FILTER (WHERE c.container_type = 'sandbox'), min(e.t0)) AS t_sb
    FROM ent e LEFT JOIN cn c ON c.host = e.host AND c.ckey = e.ckey
    WHERE e.ckey <> ''
    GROUP BY ALL
),
veth_pod AS (
    SELECT s.host, s.pod_uid, v.ts_ns, v.ts, v.ifname, abs(v.ts_ns - s.t_sb) AS d
    FROM sb s
    JOIN net_interfaces v ON v.host = s.host AND abs(v.ts_ns - s.t_sb) <= 10000000000
    WHERE v.event = 'added' AND (v.ifname LIKE 'veth%' OR v.ifname LIKE 'cali%' OR v.ifname LIKE 'lxc%')
    QUALIFY row_number() OVER (PARTITION BY v.host, v.ifname, v.ts_ns ORDER BY abs(v.ts_ns - s.t_sb), s.pod_uid) = 1
),
network AS (
    SELECT host, pod_uid, '' AS ckey, 'network_ready' AS stage,
           arg_min(ts_ns, (d, ifname)) AS ts_ns, arg_min(ts, (d, ifname)) AS ts,
           arg_min('host side ' || ifname || ' of the pod''s veth pair appeared (CNI done; nearest to the sandbox''s '
                   || 'cgroup in time) via net', (d, ifname)) AS detail
    FROM veth_pod GROUP BY ALL
),
pod AS (
    SELECT host, pod_uid, min(t0) AS t_pod FROM ent GROUP BY ALL
),
-- every container entity with its role and first exec
cont AS (
    SELECT e.host, e.pod_uid, e.ckey, coalesce(c.container_type = 'sandbox', false) AS is_sandbox, x.ts_ns AS exec_ns
    FROM ent e
    LEFT JOIN cn c ON c.host = e.host AND c.ckey = e.ckey
    LEFT JOIN exec x ON x.host = e.host AND x.pod_uid = e.pod_uid AND x.ckey = e.ckey
    WHERE e.ckey <> ''
),
per_pod AS (
    SELECT host, pod_uid,
           min(exec_ns) FILTER (WHERE is_sandbox) AS pause_ns,
           count(*) FILTER (WHERE NOT is_sandbox) AS containers,
           min(exec_ns) FILTER (WHERE NOT is_sandbox) AS first_exec_ns,
           CASE WHEN bool_and(exec_ns IS NOT NULL) FILTER (WHERE NOT is_sandbox)
                THEN max(exec_ns) FILTER (WHERE NOT is_sandbox) END AS all_exec_ns
    FROM cont GROUP BY ALL
),
names AS (
    SELECT e.host, e.pod_uid, any_value(c.pod_name) AS pod_name, any_value(c.pod_namespace) AS pod_namespace
    FROM ent e JOIN containers c ON c.host = e.host AND c.container_id = e.ckey
    GROUP BY ALL
)
SELECT p.host, p.pod_uid, n.pod_name, n.pod_namespace,
       round((pp.pause_ns - p.t_pod) / 1e6, 3) AS sandbox_ms,
       round((nw.ts_ns - p.t_pod) / 1e6, 3) AS network_ms,
       coalesce(pp.containers, 0) AS containers,
       round((pp.first_exec_ns - p.t_pod) / 1e6, 3) AS first_exec_ms,
       round((pp.all_exec_ns - p.t_pod) / 1e6, 3) AS total_ms
FROM pod p
LEFT JOIN per_pod pp ON pp.host = p.host AND pp.pod_uid = p.pod_uid
LEFT JOIN network nw ON nw.host = p.host AND nw.pod_uid = p.pod_uid
LEFT JOIN names n ON n.host = p.host AND n.pod_uid = p.pod_uid
ORDER BY p.host, p.t_pod, p.pod_uid;
