SELECT $__timeInterval(ts) AS time, concat(tenant, ' ', verdict) AS series, count() AS requests
FROM requests
WHERE $__timeFilter(ts) AND verdict != 'allow' AND match(tenant, '^(${tenant:regex})$')
GROUP BY time, series
ORDER BY time
