"""Pure drift statistics over embedding windows; knows nothing of HTTP, models or storage."""
