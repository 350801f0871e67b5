SELECT DISTINCT model FROM drift_windows WHERE $__timeFilter(ts) ORDER BY model
