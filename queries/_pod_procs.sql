-- Shared CTEs of pod_births, pod_startup and pod_stuck: not a named query (its
-- name starts with '_'); a query's line `-- include: pod_procs` is replaced by
-- this text (below this comment). It follows `-- include: pod_entities` (it reads ev).
--
-- created/ent: one entity per (host, pod, container), its creation from eBPF when
-- any eBPF row saw it; ids/paths: its cgroup2 id (what eBPF reports) and every path
-- it has, across hierarchies; procs: its processes, eBPF lineage rows by cgroup2 id,
-- /proc scan rows by path; exec: its first process exec (eBPF exec events, else
-- the first process a /proc scan found), not counting the runtime's own init.
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
-- exec: eBPF exec events; without them, the first process a /proc scan found.
-- Neither counts the runtime's own init, which can be inside the container's
-- cgroup before the entrypoint: runc's parent moves `runc init` into it while
-- that init may still be re-exec'ing itself from a copy of its binary (runc
-- 1.1's cloned binary: an exec of /dev/fd/N; comm 'runc' on recent kernels, the
-- fd's number before), and a /proc scan can find it there as 'exe' (it was
-- exec'd as /proc/self/exe) with argv[0] 'runc', before it names itself
-- runc:[0:PARENT] ... runc:[2:INIT]. Which of the move and the re-exec comes
-- first is a race (2 of some 90 recordings of 5 starts each here): counted, a container whose
-- entrypoint never ran looked exec'd. So an init is known by its comm (runc*,
-- 'exe'), by an exec of /proc/self/exe or of a file descriptor (a binary run
-- that way is the runtime's copy of itself, not an image's entrypoint), or, on
-- /proc rows whose filename is argv[0], by argv[0] runc.
exec_cand AS (
    SELECT p.host, p.pod_uid, p.ckey, p.ts_ns, p.ts, p.seq,
           CASE WHEN p.source = 'ebpf' THEN 0 ELSE 1 END AS pref,
           CASE WHEN p.source = 'ebpf'
                THEN 'pid ' || p.pid || ' exec ' || coalesce(p.filename, '?') || coalesce(' (comm ' || p.comm || ')', '') || ' via ebpf'
                ELSE 'pid ' || p.pid || ' runs ' || coalesce(p.filename, '?') || coalesce(' (comm ' || p.comm || ')', '')
                     || ' via /proc scan (exec at or before)' END AS detail
    FROM procs p JOIN ent e USING (host, pod_uid, ckey)
    WHERE p.ts_ns >= e.t0
      AND ((p.source = 'ebpf' AND p.event = 'exec') OR (p.source <> 'ebpf' AND p.event = 'seen'))
      AND NOT (coalesce(p.comm, '') LIKE 'runc%' OR coalesce(p.comm, '') = 'exe'
               OR regexp_matches(coalesce(p.filename, ''), '^/(proc/self/exe|dev/fd/[0-9]+|proc/self/fd/[0-9]+)$')
               OR (p.source <> 'ebpf' AND regexp_matches(coalesce(p.filename, ''), '(^|/)runc$')))
),
exec AS (
    SELECT host, pod_uid, ckey, 'exec' AS stage,
           arg_min(ts_ns, (pref, ts_ns, seq)) AS ts_ns, arg_min(ts, (pref, ts_ns, seq)) AS ts,
           arg_min(detail, (pref, ts_ns, seq)) AS detail
    FROM exec_cand GROUP BY ALL
),
