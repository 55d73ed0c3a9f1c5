-- name: throttle_timeline
-- description: CPU throttling per cgroup and window: throttled share of CFS periods, throttled and used CPU, quota in cores, PSI cpu pressure.
-- param: window = 1s  (window length; windows are aligned on wall-clock time)
-- param: path = %  (only cgroups whose path is LIKE this pattern)
-- columns: cgroup_path, pod_uid, container_id, window_start, window_end, nr_periods, nr_throttled, throttle_pct, throttled_ms, cpu_usage_ms, quota_cores, psi_cpu_some_avg10, host
--
-- Counters in cgroup_samples are cumulative, so each value here is the growth
-- between consecutive samples of one cgroup in one hierarchy, charged to the
-- window holding the later sample. A counter that goes down, or a new cgroup id
-- at the same path (the cgroup was removed and made again), is a reset: the
-- growth is then the new value itself, counted from zero. The first sample of a
-- cgroup has no growth and yields no row.
-- On cgroup v1 the counters live in different hierarchies (nr_periods in cpu,
-- usage in cpuacct); each counter is taken from the hierarchy that has it, so a
-- cgroup is one row per window whatever the layout.
-- throttle_pct is 100 * nr_throttled / nr_periods over the window; 0 when no
-- period elapsed (an idle cgroup is not throttled); NULL when the kernel gave no
-- CFS counters. quota_cores is NULL without a quota. psi_cpu_some_avg10 is the
-- highest cpu 'some' avg10 sampled in the window for the same cgroup2 path.
WITH
s AS (
    SELECT host, hierarchy, cgroup_path, cgroup_id, ts_ns, epoch_us(ts) AS t_us, pod_uid, container_id,
           cpu_usage_usec, nr_periods, nr_throttled, throttled_usec, cpu_quota_usec, cpu_period_usec,
           lag(ts_ns) OVER w AS p_ts,
           lag(cgroup_id) OVER w AS p_id,
           lag(cpu_usage_usec) OVER w AS p_usage,
           lag(nr_periods) OVER w AS p_periods,
           lag(nr_throttled) OVER w AS p_throttled,
           lag(throttled_usec) OVER w AS p_throttled_usec
    FROM cgroup_samples
    WHERE cgroup_path LIKE $path
      AND (cpu_usage_usec IS NOT NULL OR nr_periods IS NOT NULL OR cpu_quota_usec IS NOT NULL)
    WINDOW w AS (PARTITION BY host, hierarchy, cgroup_path ORDER BY ts_ns)
),
d AS (
    SELECT host, hierarchy, cgroup_path, pod_uid, container_id, ts_ns, cpu_quota_usec, cpu_period_usec,
           (t_us // ($window // 1000)) * ($window // 1000) AS w_us,
           p_ts IS NOT NULL AS has_prev,
           p_id IS DISTINCT FROM cgroup_id AS new_id,
           CASE WHEN p_ts IS NULL OR p_usage IS NULL THEN NULL
                WHEN p_id IS DISTINCT FROM cgroup_id OR cpu_usage_usec < p_usage THEN cpu_usage_usec
                ELSE cpu_usage_usec - p_usage END AS d_usage,
           CASE WHEN p_ts IS NULL OR p_periods IS NULL THEN NULL
                WHEN p_id IS DISTINCT FROM cgroup_id OR nr_periods < p_periods THEN nr_periods
                ELSE nr_periods - p_periods END AS d_periods,
           CASE WHEN p_ts IS NULL OR p_throttled IS NULL THEN NULL
                WHEN p_id IS DISTINCT FROM cgroup_id OR nr_throttled < p_throttled THEN nr_throttled
                ELSE nr_throttled - p_throttled END AS d_throttled,
           CASE WHEN p_ts IS NULL OR p_throttled_usec IS NULL THEN NULL
                WHEN p_id IS DISTINCT FROM cgroup_id OR throttled_usec < p_throttled_usec THEN throttled_usec
                ELSE throttled_usec - p_throttled_usec END AS d_throttled_usec
    FROM s
),
-- per hierarchy and window first, then across hierarchies: max() picks the
-- hierarchy that has the counter without double-counting one that two report
per_h AS (
    SELECT host, hierarchy, cgroup_path, w_us,
           any_value(pod_uid) AS pod_uid, any_value(container_id) AS container_id,
           bool_or(has_prev) AS has_prev,
           sum(d_usage)::BIGINT AS d_usage, sum(d_periods)::BIGINT AS d_periods, sum(d_throttled)::BIGINT AS d_throttled,
           sum(d_throttled_usec)::BIGINT AS d_throttled_usec,
           arg_max(cpu_quota_usec, ts_ns) AS quota, arg_max(cpu_period_usec, ts_ns) AS period
    FROM d GROUP BY ALL
),
win AS (
    SELECT host, cgroup_path, w_us,
           any_value(pod_uid) AS pod_uid, any_value(container_id) AS container_id,
           max(d_usage) AS d_usage, max(d_periods) AS d_periods, max(d_throttled) AS d_throttled,
           max(d_throttled_usec) AS d_throttled_usec,
           max(quota) AS quota, max(period) AS period
    FROM per_h
    WHERE has_prev
    GROUP BY ALL
),
psi AS (
    SELECT host, scope AS cgroup_path, (epoch_us(ts) // ($window // 1000)) * ($window // 1000) AS w_us,
           max(some_avg10) AS some_avg10
    FROM psi_samples
    WHERE resource = 'cpu' AND scope <> 'system' AND scope LIKE $path
    GROUP BY ALL
)
SELECT w.cgroup_path,
       w.pod_uid,
       w.container_id,
       make_timestamp(w.w_us) AS window_start,
       make_timestamp(w.w_us + $window // 1000) AS window_end,
       w.d_periods AS nr_periods,
       w.d_throttled AS nr_throttled,
       CASE WHEN w.d_periods IS NULL OR w.d_throttled IS NULL THEN NULL
            WHEN w.d_periods = 0 THEN 0.0
            ELSE round(100.0 * w.d_throttled / w.d_periods, 2) END AS throttle_pct,
       round(w.d_throttled_usec / 1000.0, 3) AS throttled_ms,
       round(w.d_usage / 1000.0, 3) AS cpu_usage_ms,
       round(w.quota / w.period, 4) AS quota_cores,
       p.some_avg10 AS psi_cpu_some_avg10,
       w.host
FROM win w
LEFT JOIN psi p USING (host, cgroup_path, w_us)
ORDER BY w.host, w.cgroup_path, w.w_us;
