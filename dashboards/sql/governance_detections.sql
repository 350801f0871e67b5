SELECT tenant, detector, category, action, count() AS findings, round(avg(score), 3) AS mean_score
FROM detections
WHERE $__timeFilter(ts) AND match(tenant, '^(${tenant:regex})$')
GROUP BY tenant, detector, category, action
ORDER BY findings DESC
LIMIT 100
