-- Shared CTEs of pod_startup and pod_stuck: not a named query (its name starts
-- with '_'); a query's line `-- include: pod_stages` is replaced by this text
-- (below this comment). It follows `-- include: pod_entities` (it reads ev).
--
-- created/ent: each pod entity's first cgroup creation (eBPF preferred) and its
-- hierarchies; ids/paths: the entity's cgroup ids and paths; procs/exec: its first
-- process exec (eBPF, else the /proc scan); cn/sb: container names and the
-- sandbox's creation; veth_pod/network: the host-side veth nearest in time to the
-- sandbox (CNI done).
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
