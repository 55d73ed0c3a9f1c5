-- name: pod_births
-- description: The birth of every pod and container cgroup created during the tape, stage by stage, with offsets from the cgroup's creation; CRI pods by name, with their sandbox and network phases.
-- columns: pod_uid, container_id, cgroup_path, stage, ts, offset_ms, detail, pod_name, pod_namespace, container_name, host
--
-- One row per observed stage of each Kubernetes cgroup (pod level: container_id
-- NULL; then its containers), in time order within the container:
--   cgroup_created      first mkdir of the cgroup in any hierarchy; on a hybrid
--                       host the same cgroup is created in cpu, memory, pids, ...
--                       and unified: one row, the earliest, naming them all
--   process_attached    first task moved into it
--   namespaces_isolated first of its processes whose namespaces differ from the
--                       host's (pid 1 rows of `namespaces`, else the recorder's
--                       own rows written with them at start)
--   exec                first exec inside it (the container's entrypoint); not
--                       the runtime's own init, which can be moved in before it
--                       re-execs itself (runc*, 'exe', an exec of /proc/self/exe
--                       or /dev/fd/N; an entrypoint run that way is not counted)
--   first_syscalls      first in-kernel syscall count charged to it
--   populated           cgroup.events said populated 1
-- Pods run by a CRI runtime (the `runtime` source's `containers` rows) show their
-- Kubernetes phases by name: the pod sandbox's cgroup is `sandbox_created` and its
-- first exec (the pause process) `pause_exec`; the pod level gains `network_ready`
-- (CNI done: the pod network's interface appeared). The net source sees only the
-- host's network namespace, so that is the host side of the pod's veth pair
-- (names veth*, cali*, lxc*) appearing, given to the pod whose sandbox cgroup was
-- born nearest in time (within 10 s); the net source hears of it from rtnetlink
-- within milliseconds; hostNetwork pods have none. pod_name, pod_namespace and
-- container_name come from the `containers` table (NULL without it, and
-- container_name NULL on the sandbox).
-- A stage is present only when observed. eBPF rows (source 'ebpf') are preferred;
-- without them the query falls back to inotify and /proc scan rows, and each
-- `detail` says which one it used ("via ebpf", "via inotify", "via /proc scan").
-- eBPF rows carry the cgroup2 id, so they are joined through the 'unified'
-- hierarchy's cgroup_id (it differs per hierarchy).
WITH
-- ident, ev: every cgroup event with its pod and container key (queries/_pod_entities.sql)
-- include: pod_entities
-- created, ent, ids, paths, procs, exec: each entity, its processes, its first exec (queries/_pod_procs.sql)
-- include: pod_procs
-- attach: the cgroup_attach_task tracepoint when recorded, else the first process
-- found inside by eBPF lineage or /proc scans, whichever saw one first (attached
-- at or before that moment)
attach_cand AS (
    SELECT v.host, v.pod_uid, v.ckey, v.ts_ns, v.ts, v.seq, 0 AS pref, v.pid, v.comm,
           'via ebpf cgroup_attach_task (' || v.hierarchy || ')' AS how
    FROM ev v JOIN ent e USING (host, pod_uid, ckey)
    WHERE v.kind = 'attach' AND v.ts_ns >= e.t0
    UNION ALL
    SELECT p.host, p.pod_uid, p.ckey, p.ts_ns, p.ts, p.seq,
           1, coalesce(p.tgid, p.pid), p.comm,
           CASE WHEN p.source = 'ebpf' THEN 'via ebpf lineage (' || p.event || ' inside the cgroup)'
                ELSE 'via /proc scan (attached at or before)' END
    FROM procs p JOIN ent e USING (host, pod_uid, ckey)
    WHERE p.ts_ns >= e.t0
),
attach AS (
    SELECT host, pod_uid, ckey, 'process_attached' AS stage,
           arg_min(ts_ns, (pref, ts_ns, seq)) AS ts_ns, arg_min(ts, (pref, ts_ns, seq)) AS ts,
           arg_min('pid ' || pid || coalesce(' (' || comm || ')', '') || ' ' || how, (pref, ts_ns, seq)) AS detail
    FROM attach_cand GROUP BY ALL
),
-- namespaces: each process of the entity, compared type by type with pid 1's
-- the host reference: pid 1's rows; where pid 1 could not be read (a sandbox may deny
-- ptrace access to it) the proc source records its own namespaces at the same moment
host_ns AS (
    SELECT n.host, n.ns_type, arg_min(n.ns_inode, (n.pid <> 1, n.pid)) AS host_inode
    FROM namespaces n
    JOIN (SELECT host, min(ts_ns) AS t FROM namespaces GROUP BY host) f ON f.host = n.host AND n.ts_ns = f.t
    GROUP BY ALL
),
ent_pids AS (
    SELECT DISTINCT host, pod_uid, ckey, pid FROM attach_cand WHERE pid IS NOT NULL
    UNION
    SELECT DISTINCT host, pod_uid, ckey, pid FROM procs
),
ns_diff AS (
    SELECT ep.host, ep.pod_uid, ep.ckey, n.pid, min(n.ts_ns) AS ts_ns, min(n.ts) AS ts,
           string_agg(n.ns_type, ', ' ORDER BY n.ns_type) FILTER (WHERE n.ns_inode <> h.host_inode) AS new_ns,
           string_agg(n.ns_type, ', ' ORDER BY n.ns_type) FILTER (WHERE n.ns_inode = h.host_inode) AS shared_ns
    FROM ent_pids ep
    JOIN ent e USING (host, pod_uid, ckey)
    JOIN namespaces n ON n.host = ep.host AND n.pid = ep.pid AND n.ts_ns >= e.t0
    JOIN host_ns h ON h.host = n.host AND h.ns_type = n.ns_type
    WHERE n.ts_ns > (SELECT min(ts_ns) FROM namespaces x WHERE x.host = n.host)
    GROUP BY ALL
),
nsiso AS (
    SELECT host, pod_uid, ckey, 'namespaces_isolated' AS stage,
           min(ts_ns) AS ts_ns, arg_min(ts, (ts_ns, pid)) AS ts,
           arg_min('pid ' || pid || ': new ' || new_ns || coalesce('; shared with the host: ' || shared_ns, '')
                   || ' via /proc/PID/ns', (ts_ns, pid)) AS detail
    FROM ns_diff WHERE new_ns IS NOT NULL
    GROUP BY ALL
),
-- first_syscalls: the first counting interval charging syscalls to the cgroup2 id,
-- then what was counted in the second that followed
-- (grouped by cgroup id, integers only, before any string: syscall_counts is the big table)
idt AS (
    SELECT i.host, i.pod_uid, i.ckey, i.cgroup_id, e.t0
    FROM ids i JOIN ent e USING (host, pod_uid, ckey)
),
-- the first interval per id as one aggregation over the table (no join): exact wherever every
-- counted interval of the id ends at or after the entity's creation (t0), the usual case; ids
-- with an interval ending before it are worked out row by row (normally none)
sc_x AS (
    SELECT host, cgroup_id, min(t0) AS t0 FROM idt GROUP BY ALL
),
sc_agg AS (
    SELECT host, cgroup_id, min(interval_start_ns) AS first_start, min(interval_end_ns) AS min_end
    FROM syscall_counts WHERE count > 0
    GROUP BY host, cgroup_id
),
sc_first AS (
    SELECT a.host, a.cgroup_id, a.first_start
    FROM sc_agg a JOIN sc_x x ON a.host = x.host AND a.cgroup_id = x.cgroup_id
    WHERE a.min_end >= x.t0
    UNION ALL
    SELECT s.host, s.cgroup_id, min(s.interval_start_ns) AS first_start
    FROM syscall_counts s
    JOIN (SELECT x.host, x.cgroup_id, x.t0 FROM sc_x x JOIN sc_agg a ON a.host = x.host AND a.cgroup_id = x.cgroup_id
          WHERE a.min_end < x.t0) x
      ON s.host = x.host AND s.cgroup_id = x.cgroup_id
    WHERE s.count > 0 AND s.interval_end_ns >= x.t0
    GROUP BY s.host, s.cgroup_id
),
-- the whole-second buckets each first second overlaps (two): the join below matches on them, so
-- only rows near the first second reach its range test
sc_win AS (
    SELECT host, cgroup_id, first_start, first_start // 1000000000 AS b FROM sc_first
    UNION ALL
    SELECT host, cgroup_id, first_start, first_start // 1000000000 + 1 AS b FROM sc_first
),
sc_sec AS (
    SELECT s.host, s.cgroup_id, s.syscall_nr, coalesce(any_value(s.syscall_name), '#' || s.syscall_nr) AS name,
           sum(s.count)::BIGINT AS n
    FROM syscall_counts s
    JOIN sc_win f ON s.host = f.host AND s.cgroup_id = f.cgroup_id AND s.interval_start_ns // 1000000000 = f.b
    WHERE s.count > 0 AND s.interval_start_ns >= f.first_start AND s.interval_start_ns < f.first_start + 1000000000
    GROUP BY s.host, s.cgroup_id, s.syscall_nr
),
sc_top AS (
    SELECT host, cgroup_id, sum(n) AS total,
           sum(n) FILTER (WHERE name IN ('clone', 'clone3', 'fork', 'vfork')) AS clones,
           string_agg(name || ' ' || n, ', ' ORDER BY n DESC, name) FILTER (WHERE rk <= 5) AS top
    FROM (SELECT *, row_number() OVER (PARTITION BY host, cgroup_id ORDER BY n DESC, name) AS rk FROM sc_sec)
    GROUP BY ALL
),
first_sc AS (
    SELECT i.host, i.pod_uid, i.ckey, 'first_syscalls' AS stage,
           -- the counting interval may have started before the cgroup existed, or before a
           -- task was in it: the calls came after both
           greatest(f.first_start, e.t0, coalesce(a.ts_ns, e.t0)) AS ts_ns,
           e.t0_ts + to_microseconds(((greatest(f.first_start, e.t0, coalesce(a.ts_ns, e.t0)) - e.t0) // 1000)::BIGINT) AS ts,
           t.total || ' syscalls in the first second (' || coalesce(t.clones, 0) || ' clone/fork); top: '
               || t.top || ' via ebpf' AS detail
    FROM idt i
    JOIN sc_first f ON f.host = i.host AND f.cgroup_id = i.cgroup_id
    JOIN sc_top t ON t.host = i.host AND t.cgroup_id = i.cgroup_id
    JOIN ent e ON e.host = i.host AND e.pod_uid = i.pod_uid AND e.ckey = i.ckey
    LEFT JOIN attach a ON a.host = i.host AND a.pod_uid = i.pod_uid AND a.ckey = i.ckey
),
populated AS (
    SELECT v.host, v.pod_uid, v.ckey, 'populated' AS stage,
           arg_min(v.ts_ns, (v.source <> 'ebpf', v.ts_ns, v.seq)) AS ts_ns,
           arg_min(v.ts, (v.source <> 'ebpf', v.ts_ns, v.seq)) AS ts,
           arg_min('cgroup.events populated 1 (' || v.hierarchy || ') via ' || v.source, (v.source <> 'ebpf', v.ts_ns, v.seq)) AS detail
    FROM ev v JOIN ent e USING (host, pod_uid, ckey)
    WHERE v.kind = 'populated' AND v.ts_ns >= e.t0
    GROUP BY ALL
),
created_stage AS (
    SELECT host, pod_uid, ckey, 'cgroup_created' AS stage, t0 AS ts_ns, t0_ts AS ts,
           'mkdir in ' || n_hierarchies || ' hierarch' || CASE WHEN n_hierarchies = 1 THEN 'y' ELSE 'ies' END
               || ' (' || hierarchies || '; first: ' || first_hierarchy || ') via '
               || CASE WHEN by_ebpf THEN 'ebpf' ELSE 'inotify' END AS detail
    FROM ent
),
stages AS (
    SELECT * FROM created_stage
    UNION ALL SELECT * FROM attach
    UNION ALL SELECT * FROM nsiso
    UNION ALL SELECT * FROM exec
    UNION ALL SELECT * FROM first_sc
    UNION ALL SELECT * FROM populated
),
pod_order AS (
    SELECT host, pod_uid, min(t0) AS pod_t0 FROM ent GROUP BY ALL
),
-- cn/sb/veth_pod/network: container names, the sandbox's birth, network_ready (queries/_pod_stages.sql)
-- include: pod_stages
-- pod names, per pod through any of its containers
pn AS (
    SELECT e.host, e.pod_uid, any_value(c.pod_name) AS pod_name, any_value(c.pod_namespace) AS pod_namespace
    FROM ent e JOIN containers c ON c.host = e.host AND c.container_id = e.ckey
    GROUP BY ALL
),
all_stages AS (
    SELECT * FROM stages
    UNION ALL SELECT * FROM network
)
SELECT s.pod_uid,
       nullif(s.ckey, '') AS container_id,
       e.cgroup_path,
       CASE WHEN c.container_type = 'sandbox' AND s.stage = 'cgroup_created' THEN 'sandbox_created'
            WHEN c.container_type = 'sandbox' AND s.stage = 'exec' THEN 'pause_exec'
            ELSE s.stage END AS stage,
       s.ts,
       round((s.ts_ns - e.t0) / 1e6, 3) AS offset_ms,
       s.detail,
       pn.pod_name,
       pn.pod_namespace,
       c.container_name,
       s.host
FROM all_stages s
JOIN ent e ON e.host = s.host AND e.pod_uid = s.pod_uid AND e.ckey = s.ckey
JOIN pod_order p ON p.host = s.host AND p.pod_uid = s.pod_uid
LEFT JOIN cn c ON c.host = s.host AND c.ckey = s.ckey
LEFT JOIN pn ON pn.host = s.host AND pn.pod_uid = s.pod_uid
ORDER BY s.host, p.pod_t0, s.pod_uid, s.ckey <> '', e.t0, s.ckey, s.ts_ns,
         list_position(['cgroup_created', 'network_ready', 'process_attached', 'namespaces_isolated', 'exec',
                        'first_syscalls', 'populated'], s.stage);
