-- name: packet_drops_by_location
-- description: Dropped packets grouped by kernel drop location and reason, with protocol and interfaces.
-- param: top = 50  (rows kept, most drops first)
-- columns: location, reason, protocol, interfaces, drops, first_ts, last_ts, host
--
-- One row per (location, reason, protocol) of skb:kfree_skb drops. interfaces
-- names the devices of the dropped skbs (from net_interfaces by ifindex; the
-- index itself when the tape has no name for it).
WITH
ifn AS (
    SELECT host, ifindex, arg_max(ifname, ts_ns) AS ifname
    FROM net_interfaces WHERE ifindex IS NOT NULL GROUP BY ALL
),
d AS (
    SELECT p.host, p.location, p.reason, p.protocol, p.ts, p.ts_ns,
           CASE WHEN p.ifindex IS NULL THEN NULL ELSE coalesce(i.ifname, 'if' || p.ifindex) END AS ifname
    FROM packet_drops p LEFT JOIN ifn i ON i.host = p.host AND i.ifindex = p.ifindex
),
g AS (
    SELECT host, location, reason,
           CASE protocol WHEN 2048 THEN 'ipv4' WHEN 34525 THEN 'ipv6' WHEN 2054 THEN 'arp'
                WHEN 0 THEN NULL ELSE printf('0x%04x', protocol) END AS protocol,
           string_agg(DISTINCT ifname, ', ' ORDER BY ifname) AS interfaces,
           count(*) AS drops, min(ts) AS first_ts, max(ts) AS last_ts
    FROM d GROUP BY host, location, reason, 4
)
SELECT location, reason, protocol, interfaces, drops, first_ts, last_ts, host
FROM g
QUALIFY row_number() OVER (PARTITION BY host ORDER BY drops DESC, location, reason, protocol) <= $top
ORDER BY host, drops DESC, location, reason, protocol;
