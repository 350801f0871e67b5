SELECT model, stratum, count() AS drawn, round(avg(sampling_rate), 4) AS mean_inclusion_probability,
       round(sum(1 / sampling_rate)) AS exchanges_represented
FROM review_samples
WHERE $__timeFilter(ts) AND match(model, '^(${model:regex})$')
GROUP BY model, stratum
ORDER BY model, stratum
