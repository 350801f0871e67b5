SELECT $__timeInterval(ts) AS time, concat(model, ' ', stream) AS series, avg(value) AS auc
FROM drift_windows
WHERE $__timeFilter(ts) AND statistic = 'classifier_auc' AND match(model, '^(${model:regex})$')
GROUP BY time, series
ORDER BY time
