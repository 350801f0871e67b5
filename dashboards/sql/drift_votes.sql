SELECT $__timeInterval(ts) AS time, model, max(value) AS votes, max(threshold) AS votes_needed,
       max(toUInt8(attrs['alert'] = '1')) AS alert
FROM drift_windows
WHERE $__timeFilter(ts) AND statistic = 'verdict' AND match(model, '^(${model:regex})$')
GROUP BY time, model
ORDER BY time
