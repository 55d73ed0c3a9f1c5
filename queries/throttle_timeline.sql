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
-- Speed: paths are long strings, so each (host, cgroup_path) gets an integer
-- key (numbered in output order) and each hierarchy of it another; windows,
-- group-bys, joins and the sort then work on integers, and the strings are
-- looked up by key once at the end, after the sort. A sample that is alone in its window, in a
-- cgroup sampled in one hierarchy, skips both aggregations (the usual case with
-- windows no shorter than the sampling interval).
raw AS NOT MATERIALIZED (
    SELECT host, hierarchy, cgroup_path, cgroup_id, ts_ns, pod_uid, container_id,
           bucket_us(epoch_us(ts), $window) AS w_us,
           cpu_usage_usec, nr_periods, nr_throttled, throttled_usec, cpu_quota_usec, cpu_period_usec
    FROM cgroup_samples
    WHERE cgroup_path LIKE $path
      AND (cpu_usage_usec IS NOT NULL OR nr_periods IS NOT NULL OR cpu_quota_usec IS NOT NULL)
),
-- the (host, hierarchy, path) triples, in one scan of the strings; pod_uid and
-- container_id are the path's (the recorder derives them from the path)
hp AS (
    SELECT host, hierarchy, cgroup_path, any_value(pod_uid) AS pod_uid, any_value(container_id) AS container_id
    FROM raw GROUP BY host, hierarchy, cgroup_path
),
-- one key per cgroup path, in output order
paths AS (
    SELECT host, cgroup_path, pod_uid, container_id, row_number() OVER (ORDER BY host, cgroup_path) AS pk
    FROM (SELECT host, cgroup_path, any_value(pod_uid) AS pod_uid, any_value(container_id) AS container_id
          FROM hp GROUP BY host, cgroup_path)
),
-- one key per hierarchy of a path; n_h: how many hierarchies give CPU counters for it
hpaths AS (
    SELECT h.host, h.hierarchy, h.cgroup_path, p.pk, row_number() OVER () AS hk,
           count(*) OVER (PARTITION BY p.pk) AS n_h
    FROM hp h JOIN paths p USING (host, cgroup_path)
),
-- the window (lag/lead per hierarchy key) sits inside d, so the CTE that both consumers read is
-- d's 12 columns: DuckDB streams it to one consumer and buffers it for the other, and a buffer
-- of the window's 20 columns was 0.65 GB at 100M rows (peak RSS 3.27 -> 2.89 GB)
d AS (
    SELECT pk, hk, ts_ns, cpu_quota_usec, cpu_period_usec, w_us,
           n_h = 1 AND p_w IS DISTINCT FROM w_us AND n_w IS DISTINCT FROM w_us AS alone,
           p_ts IS NOT NULL AS has_prev,
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
    FROM (
        SELECT p.pk, p.hk, p.n_h, r.cgroup_id, r.ts_ns, r.w_us,
               r.cpu_usage_usec, r.nr_periods, r.nr_throttled, r.throttled_usec, r.cpu_quota_usec, r.cpu_period_usec,
               lag(r.ts_ns) OVER w AS p_ts,
               lag(r.w_us) OVER w AS p_w,
               lead(r.w_us) OVER w AS n_w,
               lag(r.cgroup_id) OVER w AS p_id,
               lag(r.cpu_usage_usec) OVER w AS p_usage,
               lag(r.nr_periods) OVER w AS p_periods,
               lag(r.nr_throttled) OVER w AS p_throttled,
               lag(r.throttled_usec) OVER w AS p_throttled_usec
        FROM raw r JOIN hpaths p
          ON p.host = r.host AND p.hierarchy IS NOT DISTINCT FROM r.hierarchy AND p.cgroup_path = r.cgroup_path
        WINDOW w AS (PARTITION BY p.hk ORDER BY r.ts_ns)
    ) s
),
-- per hierarchy and window first, then across hierarchies: max() picks the
-- hierarchy that has the counter without double-counting one that two report
per_h AS (
    SELECT any_value(pk) AS pk, hk, w_us,
           bool_or(has_prev) AS has_prev,
           sum(d_usage)::BIGINT AS d_usage, sum(d_periods)::BIGINT AS d_periods, sum(d_throttled)::BIGINT AS d_throttled,
           sum(d_throttled_usec)::BIGINT AS d_throttled_usec,
           arg_max(cpu_quota_usec, ts_ns) AS quota, arg_max(cpu_period_usec, ts_ns) AS period
    FROM d WHERE NOT alone GROUP BY hk, w_us
),
win AS (
    SELECT pk, w_us, d_usage, d_periods, d_throttled, d_throttled_usec,
           cpu_quota_usec AS quota, cpu_period_usec AS period
    FROM d WHERE alone AND has_prev
    UNION ALL
    SELECT pk, w_us,
           max(d_usage) AS d_usage, max(d_periods) AS d_periods, max(d_throttled) AS d_throttled,
           max(d_throttled_usec) AS d_throttled_usec,
           max(quota) AS quota, max(period) AS period
    FROM per_h
    WHERE has_prev
    GROUP BY pk, w_us
),
psi AS (
    SELECT p.pk, bucket_us(epoch_us(q.ts), $window) AS w_us,
           max(q.some_avg10) AS some_avg10
    FROM psi_samples q JOIN paths p ON p.host = q.host AND p.cgroup_path = q.scope
    WHERE q.resource = 'cpu' AND q.scope <> 'system' AND q.scope LIKE $path
    GROUP BY ALL
),
wp AS (
    SELECT w.*, s.some_avg10 FROM win w LEFT JOIN psi s USING (pk, w_us)
)
-- The rows are sorted on integers only, then each key's strings are read from lists indexed by the
-- key (pk numbers the paths 1..n): a sort that carried the strings moved ~0.6 GB of them at 100M
-- rows (peak RSS 4.9 GB against 3.3). Only SELECT over one ordered subquery follows the sort, which
-- both engines keep in order (DuckDB plans each scalar subquery as a one-row product streaming the
-- sorted side; a join would not be bound to keep it: Spark drops a sort beneath one).
SELECT (SELECT list(cgroup_path ORDER BY pk) FROM paths)[w.pk] AS cgroup_path,
       (SELECT list(pod_uid ORDER BY pk) FROM paths)[w.pk] AS pod_uid,
       (SELECT list(container_id ORDER BY pk) FROM paths)[w.pk] AS container_id,
       make_timestamp(w.w_us) AS window_start,
       bucket_end(w.w_us, $window) AS window_end,
       w.d_periods AS nr_periods,
       w.d_throttled AS nr_throttled,
       CASE WHEN w.d_periods IS NULL OR w.d_throttled IS NULL THEN NULL
            WHEN w.d_periods = 0 THEN 0.0
            ELSE round(100.0 * w.d_throttled / w.d_periods, 2) END AS throttle_pct,
       round(w.d_throttled_usec / 1000.0, 3) AS throttled_ms,
       round(w.d_usage / 1000.0, 3) AS cpu_usage_ms,
       round(w.quota / w.period, 4) AS quota_cores,
       w.some_avg10 AS psi_cpu_some_avg10,
       (SELECT list(host ORDER BY pk) FROM paths)[w.pk] AS host
FROM (SELECT * FROM wp ORDER BY pk, w_us) w;
