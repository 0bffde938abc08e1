WITH outside_maintenance AS (
SELECT m.service_name, m.recorded_at, m.status
FROM service_metrics m
WHERE m.recorded_at >= NOW() - INTERVAL '24 hours'
AND NOT EXISTS (
SELECT 1 FROM weir_suppressions s
WHERE s.service_name = CAST(m.service_name AS VARCHAR)
AND m.recorded_at >= s.starts_at AND m.recorded_at < s.ends_at
)
),
hourly_raw AS (
SELECT service_name, DATE_TRUNC('hour', recorded_at) AS hour,
ROUND(100.0 * COUNT(*) FILTER (WHERE status = 'healthy') / COUNT(*), 2) AS uptime_pct
FROM service_metrics
WHERE recorded_at >= NOW() - INTERVAL '24 hours'
GROUP BY service_name, DATE_TRUNC('hour', recorded_at)
),
hourly_outside AS (
SELECT service_name, DATE_TRUNC('hour', recorded_at) AS hour,
ROUND(100.0 * COUNT(*) FILTER (WHERE status = 'healthy') / COUNT(*), 2) AS uptime_pct
FROM outside_maintenance
GROUP BY service_name, DATE_TRUNC('hour', recorded_at)
),
raw AS (
SELECT service_name, AVG(uptime_pct) AS avg_uptime, MIN(uptime_pct) AS worst_hour
FROM hourly_raw GROUP BY service_name
),
outside AS (
SELECT service_name, AVG(uptime_pct) AS avg_uptime, MIN(uptime_pct) AS worst_hour
FROM hourly_outside GROUP BY service_name
)
SELECT
r.service_name,
ROUND(r.avg_uptime, 2) AS avg_uptime_pct,
ROUND(o.avg_uptime, 2) AS avg_uptime_outside_maintenance_pct,
r.worst_hour AS worst_hour_pct,
o.worst_hour AS worst_hour_outside_maintenance_pct
FROM raw r LEFT JOIN outside o ON r.service_name = o.service_name
ORDER BY r.avg_uptime ASC;
