SELECT $__timeInterval(ts) AS time, concat(model, ' ', stream) AS series, avg(value) AS mmd2
FROM drift_windows
WHERE $__timeFilter(ts) AND statistic = 'mmd' AND match(model, '^(${model:regex})$')
GROUP BY time, series
ORDER BY time
