SELECT model, stream, statistic,
       argMax(value, ts) AS value, argMax(threshold, ts) AS threshold, argMax(p_value, ts) AS p_value,
       argMax(drifted, ts) AS drifted, argMax(sample_size, ts) AS sample_size, max(ts) AS last_window
FROM drift_windows
WHERE $__timeFilter(ts) AND match(model, '^(${model:regex})$')
GROUP BY model, stream, statistic
ORDER BY model, stream, statistic
