SELECT ts AS time, upstream_group, backend, previous_state, state, reason
FROM backend_health
WHERE $__timeFilter(ts)
ORDER BY ts DESC
LIMIT 200
