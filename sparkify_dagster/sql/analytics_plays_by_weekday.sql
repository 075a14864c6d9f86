-- analytics.plays_by_weekday: songplays per day of week (UTC), weekday 0 = Sunday .. 6 = Saturday
-- as in the time dimension (Redshift's EXTRACT(dow)); all seven days present (0 plays when none).
WITH weekdays AS (
    {% for name in weekday_names -%}
    SELECT {{ loop.index0 }} AS weekday, '{{ name }}' AS day_name{% if not loop.last %} UNION ALL{% endif %}
    {% endfor %}
),

counts AS (
    SELECT
        t.weekday,
        COUNT(*) AS plays,
        COUNT(DISTINCT sp.user_id) AS listeners
    FROM {{ ref('songplays') }} AS sp
    JOIN {{ ref('time') }} AS t ON t.start_time = sp.start_time
    GROUP BY t.weekday
)

SELECT
    w.weekday,
    w.day_name,
    COALESCE(c.plays, 0) AS plays,
    COALESCE(c.listeners, 0) AS listeners
FROM weekdays AS w
LEFT JOIN counts AS c ON c.weekday = w.weekday
