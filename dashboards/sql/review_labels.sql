SELECT $__timeInterval(ts) AS time, label, count() AS labels
FROM review_labels
WHERE $__timeFilter(ts) AND match(attrs['model'], '^(${model:regex})$')
GROUP BY time, label
ORDER BY time
