-- Shared CTEs of pod_births, pod_startup and pod_stuck: not a named query (its
-- name starts with '_'); a query's line `-- include: pod_procs` is replaced by
-- this text (below this comment). It follows `-- include: pod_entities` (it reads ev).
--
-- created/ent: one entity per (host, pod, container), its creation from eBPF when
-- any eBPF row saw it; ids/paths: its cgroup2 id (what eBPF reports) and every path
-- it has, across hierarchies; procs: its processes, eBPF lineage rows by cgroup2 id,
-- /proc scan rows by path; exec: its first process exec (eBPF exec events, else
-- the first process a /proc scan found running something other than the runtime's init).
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
-- the cgroup2 id (what eBPF reports) and every path the entity has, across hierarchies
ids AS (
    SELECT DISTINCT e.host, e.pod_uid, e.ckey, v.cgroup_id
    FROM ent e JOIN ev v USING (host, pod_uid, ckey)
    WHERE v.hierarchy = 'unified' AND v.cgroup_id IS NOT NULL AND v.kind IN ('created', 'seen')
),
paths AS (
    SELECT DISTINCT e.host, e.pod_uid, e.ckey, v.cgroup_path
    FROM ent e JOIN ev v USING (host, pod_uid, ckey)
),
-- processes of each entity: eBPF lineage rows by cgroup2 id, /proc scan rows by path
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
-- exec: eBPF exec events; without them, the first process a /proc scan found
-- running something other than the runtime's init (runc:[2:INIT])
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
