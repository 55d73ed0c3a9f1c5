-- name: psi_timeline
-- description: Pressure per scope (system or cgroup), resource and window: stall share from the cumulative totals, the kernel's avg10, trigger firings.
-- param: window = 1s  (window length; aligned on wall-clock time)
-- param: scope = %  (only scopes LIKE this pattern: 'system' or a cgroup2 path)
-- param: resource = %  (cpu, memory, io, irq or a LIKE pattern)
-- columns: scope, resource, window_start, window_end, some_pct, full_pct, some_stall_ms, full_stall_ms, some_avg10, full_avg10, trigger_firings, host
--
-- some_pct / full_pct are derived from the growth of some_total_usec /
-- full_total_usec between consecutive samples, divided by the time between them
-- (exact over the window, unlike avg10 which is a 10 s decaying average); a total
-- that goes down is a reset and counts from zero. some_avg10 / full_avg10 are the
-- highest values sampled in the window. full_* is NULL where the kernel has no
-- 'full' line (system cpu before 5.13). trigger_firings counts psi_events rows.
WITH
s AS (
    SELECT host, scope, resource, ts_ns, epoch_us(ts) AS t_us, some_avg10, full_avg10,
           some_total_usec, full_total_usec,
           lag(ts_ns) OVER w AS p_ts,
           lag(some_total_usec) OVER w AS p_some,
           lag(full_total_usec) OVER w AS p_full
    FROM psi_samples
    WHERE scope LIKE $scope AND resource LIKE $resource
    WINDOW w AS (PARTITION BY host, scope, resource ORDER BY ts_ns)
),
win AS (
    SELECT host, scope, resource, bucket_us(t_us, $window) AS w_us,
           sum(ts_ns - p_ts) AS span_ns,
           sum(CASE WHEN some_total_usec < p_some THEN some_total_usec ELSE some_total_usec - p_some END)::BIGINT AS d_some,
           sum(CASE WHEN full_total_usec < p_full THEN full_total_usec ELSE full_total_usec - p_full END)::BIGINT AS d_full,
           max(some_avg10) AS some_avg10, max(full_avg10) AS full_avg10
    FROM s
    GROUP BY ALL
),
trig AS (
    SELECT host, scope, resource, bucket_us(epoch_us(ts), $window) AS w_us,
           count(*) AS n
    FROM psi_events
    WHERE scope LIKE $scope AND resource LIKE $resource
    GROUP BY ALL
)
SELECT w.scope,
       w.resource,
       make_timestamp(w.w_us) AS window_start,
       bucket_end(w.w_us, $window) AS window_end,
       round(100.0 * w.d_some * 1000 / nullif(w.span_ns, 0), 2) AS some_pct,
       round(100.0 * w.d_full * 1000 / nullif(w.span_ns, 0), 2) AS full_pct,
       round(w.d_some / 1000.0, 3) AS some_stall_ms,
       round(w.d_full / 1000.0, 3) AS full_stall_ms,
       w.some_avg10,
       w.full_avg10,
       coalesce(t.n, 0) AS trigger_firings,
       w.host
FROM win w
LEFT JOIN trig t USING (host, scope, resource, w_us)
ORDER BY w.host, w.scope <> 'system', w.scope, w.resource, w.w_us;
