-- analytics.plays_by_level: free vs paid songplays (the user's level at the time of the play).
-- free and paid are always present (0 plays when none); a play without a level counts as 'unknown'
-- (the level check on songplays keeps that from happening). share_pct: percent of all songplays.
WITH counts AS (
    SELECT
        COALESCE(sp.level, 'unknown') AS level,
        COUNT(*) AS plays,
        COUNT(DISTINCT sp.user_id) AS listeners
    FROM {{ ref('songplays') }} AS sp
    GROUP BY COALESCE(sp.level, 'unknown')
),

levels AS (
    {% for name in levels -%}
    SELECT '{{ name }}' AS level
    UNION
    {% endfor -%}
    SELECT level FROM counts
),

total AS (
    SELECT COUNT(*) AS plays FROM {{ ref('songplays') }}
)

SELECT
    l.level,
    COALESCE(c.plays, 0) AS plays,
    COALESCE(c.listeners, 0) AS listeners,
    COALESCE(ROUND(100.0 * COALESCE(c.plays, 0) / NULLIF(t.plays, 0), 2), 0) AS share_pct
FROM levels AS l
CROSS JOIN total AS t
LEFT JOIN counts AS c ON c.level = l.level
