SELECT $__timeInterval(ts) AS time, model, countIf(drifted) AS drifted_windows
FROM drift_windows
WHERE $__timeFilter(ts) AND statistic = 'verdict' AND match(model, '^(${model:regex})$')
GROUP BY time, model
ORDER BY time
