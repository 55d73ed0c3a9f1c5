-- name: tables_overview
-- description: Rows, first and last time of every table in the tape(s).
-- columns: host, table_name, rows, first_ts, last_ts
SELECT host, 'cgroup_events' AS table_name, count(*) AS rows, min(ts) AS first_ts, max(ts) AS last_ts FROM cgroup_events GROUP BY host
UNION ALL SELECT host, 'cgroup_samples', count(*), min(ts), max(ts) FROM cgroup_samples GROUP BY host
UNION ALL SELECT host, 'psi_samples', count(*), min(ts), max(ts) FROM psi_samples GROUP BY host
UNION ALL SELECT host, 'psi_events', count(*), min(ts), max(ts) FROM psi_events GROUP BY host
UNION ALL SELECT host, 'processes', count(*), min(ts), max(ts) FROM processes GROUP BY host
UNION ALL SELECT host, 'namespaces', count(*), min(ts), max(ts) FROM namespaces GROUP BY host
UNION ALL SELECT host, 'syscall_counts', count(*), min(interval_start), max(interval_end) FROM syscall_counts GROUP BY host
UNION ALL SELECT host, 'syscall_latency', count(*), min(interval_start), max(interval_end) FROM syscall_latency GROUP BY host
UNION ALL SELECT host, 'file_opens', count(*), min(ts), max(ts) FROM file_opens GROUP BY host
UNION ALL SELECT host, 'packet_drops', count(*), min(ts), max(ts) FROM packet_drops GROUP BY host
UNION ALL SELECT host, 'mounts', count(*), min(ts), max(ts) FROM mounts GROUP BY host
UNION ALL SELECT host, 'net_interfaces', count(*), min(ts), max(ts) FROM net_interfaces GROUP BY host
UNION ALL SELECT host, 'recorder_stats', count(*), min(ts), max(ts) FROM recorder_stats GROUP BY host
ORDER BY host, table_name;
