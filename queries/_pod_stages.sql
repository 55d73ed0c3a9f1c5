-- Shared CTEs of pod_births, pod_startup and pod_stuck: not a named query (its name starts
-- with '_'); a query's line `-- include: pod_stages` is replaced by this text
-- (below this comment). It follows `-- include: pod_entities` and `-- include: pod_procs`.
--
-- cn/sb: container names and the sandbox's creation; veth_pod/network: the host-side veth
-- nearest in time to the sandbox (CNI done).
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
