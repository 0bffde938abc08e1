WITH hourly_health AS (
SELECT
service_name,
recorded_at AS hour,
checks AS total_checks,
healthy AS healthy_checks,
ROUND(
100.0 * healthy / checks,
2
) AS uptime_pct
FROM service_metrics_1h
WHERE recorded_at >= NOW() - INTERVAL '24 hours'
),
service_summary AS (
SELECT
service_name,
MIN(uptime_pct) AS min_uptime,
AVG(uptime_pct) AS avg_uptime,
COUNT(*) FILTER (WHERE uptime_pct < 99.9) AS degraded_hours
FROM hourly_health
GROUP BY service_name
)
SELECT
service_name,
ROUND(avg_uptime, 2) AS avg_uptime_pct,
min_uptime AS worst_hour_pct,
degraded_hours,
CASE
WHEN avg_uptime >= 99.9 THEN 'HEALTHY'
WHEN avg_uptime >= 99.0 THEN 'DEGRADED'
ELSE 'CRITICAL'
END AS status
FROM service_summary
ORDER BY avg_uptime ASC;
