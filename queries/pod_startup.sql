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
-- created, ent, ids, paths, procs, exec: each entity, its processes, its first exec (queries/_pod_procs.sql)
-- include: pod_procs
-- cn ... network: the sandbox and its network (queries/_pod_stages.sql)
-- include: pod_stages
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
