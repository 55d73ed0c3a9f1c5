-- name: syscall_profile
-- description: Top syscalls per pod/container cgroup and window, from the in-kernel counts.
-- param: window = 10s  (window length; aligned on wall-clock time)
-- param: top = 10  (syscalls kept per cgroup and window)
-- columns: pod_uid, container_id, cgroup_path, cgroup_id, window_start, window_end, rank, syscall_name, syscall_nr, count, share_pct, host
--
-- syscall_counts carries the cgroup2 id of the calling task; the path, pod and
-- container come from cgroup_events and cgroup_samples rows of the 'unified'
-- hierarchy with that id (NULL when the tape never saw the cgroup's path, e.g.
-- the root cgroup). A counting interval is charged to the window holding its end.
-- share_pct is the syscall's share of all calls of that cgroup in the window.
WITH
names AS (
    SELECT host, cgroup_id, arg_max(cgroup_path, ts_ns) AS cgroup_path,
           arg_max(pod_uid, ts_ns) AS pod_uid, arg_max(container_id, ts_ns) AS container_id
    FROM (
        SELECT host, cgroup_id, cgroup_path, ts_ns, pod_uid, container_id
        FROM cgroup_events WHERE hierarchy = 'unified' AND cgroup_id IS NOT NULL
        UNION ALL
        SELECT host, cgroup_id, cgroup_path, ts_ns, pod_uid, container_id
        FROM cgroup_samples WHERE hierarchy = 'unified' AND cgroup_id IS NOT NULL
    )
    GROUP BY ALL
),
agg AS (
    SELECT host, cgroup_id, bucket_us(epoch_us(interval_end), $window) AS w_us,
           syscall_nr, coalesce(any_value(syscall_name), '#' || syscall_nr) AS syscall_name, sum(count)::BIGINT AS count
    FROM syscall_counts
    GROUP BY host, cgroup_id, w_us, syscall_nr
),
ranked AS (
    SELECT *,
           row_number() OVER (PARTITION BY host, cgroup_id, w_us ORDER BY count DESC, syscall_nr) AS rank,
           100.0 * count / sum(count) OVER (PARTITION BY host, cgroup_id, w_us) AS share
    FROM agg
)
SELECT n.pod_uid,
       n.container_id,
       n.cgroup_path,
       r.cgroup_id,
       make_timestamp(r.w_us) AS window_start,
       bucket_end(r.w_us, $window) AS window_end,
       r.rank,
       r.syscall_name,
       r.syscall_nr,
       r.count,
       round(r.share, 2) AS share_pct,
       r.host
FROM ranked r
LEFT JOIN names n USING (host, cgroup_id)
WHERE r.rank <= $top
ORDER BY r.host, n.pod_uid NULLS LAST, n.container_id NULLS FIRST, n.cgroup_path, r.cgroup_id, r.w_us, r.rank;
