-- analytics.plays_by_hour: songplays per hour of day (UTC), one row for every hour 0-23 (0 plays
-- when none). The hour comes from the time dimension; the hours (the catalog's HOURS) are a literal list, so the SQL
-- needs no engine-specific series generator (Redshift's generate_series runs on the leader only).
WITH hours AS (
    {% for h in hours -%}
    SELECT {{ h }} AS hour{% if not loop.last %} UNION ALL{% endif %}
    {% endfor %}
),

counts AS (
    SELECT
        t.hour,
        COUNT(*) AS plays,
        COUNT(DISTINCT sp.user_id) AS listeners
    FROM {{ ref('songplays') }} AS sp
    JOIN {{ ref('time') }} AS t ON t.start_time = sp.start_time
    GROUP BY t.hour
)

SELECT
    h.hour,
    COALESCE(c.plays, 0) AS plays,
    COALESCE(c.listeners, 0) AS listeners
FROM hours AS h
LEFT JOIN counts AS c ON c.hour = h.hour
