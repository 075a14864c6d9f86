-- time: one row per distinct songplays.start_time. week is the ISO 8601 week number;
-- weekday is 0 = Sunday .. 6 = Saturday (EXTRACT(dow), as on Redshift).
SELECT
    start_time,
    CAST(EXTRACT(hour FROM start_time) AS INTEGER) AS hour,
    CAST(EXTRACT(day FROM start_time) AS INTEGER) AS day,
    CAST(EXTRACT(week FROM start_time) AS INTEGER) AS week,
    CAST(EXTRACT(month FROM start_time) AS INTEGER) AS month,
    CAST(EXTRACT(year FROM start_time) AS INTEGER) AS year,
    CAST(EXTRACT(dow FROM start_time) AS INTEGER) AS weekday
FROM (
    SELECT DISTINCT start_time FROM {{ ref('songplays') }}
{%- if affected %}
    WHERE start_time IN (SELECT start_time FROM {{ affected }})  -- only the given start_times
{%- endif %}
) AS t
