-- analytics.plays_by_platform: songplays per client platform, parsed from the user agent with LIKE
-- patterns. User agents are logged as they were sent, often wrapped in literal double quotes
-- ("Mozilla/5.0 (…)"), so every pattern is a substring match ('%…%') and quotes never matter.
-- Order matters: an iPhone or iPad agent also says "Mac OS X", an Android agent also says "Linux",
-- and a Windows Phone agent says "Android" and "iPhone" (it counts as Windows). No agent → Other.
-- Every platform is present (0 plays when none); share_pct: percent of all songplays.
WITH platforms AS (
    {% for name in platforms -%}
    SELECT '{{ name }}' AS platform{% if not loop.last %} UNION ALL{% endif %}
    {% endfor %}
),

classified AS (
    SELECT
        sp.user_id,
        CASE
            WHEN sp.user_agent LIKE '%Windows Phone%' THEN 'Windows'
            WHEN sp.user_agent LIKE '%iPhone%' THEN 'iPhone'
            WHEN sp.user_agent LIKE '%iPad%' THEN 'iPad'
            WHEN sp.user_agent LIKE '%Android%' THEN 'Android'
            WHEN sp.user_agent LIKE '%Windows%' THEN 'Windows'
            WHEN sp.user_agent LIKE '%Macintosh%' OR sp.user_agent LIKE '%Mac OS X%' THEN 'Mac'
            WHEN sp.user_agent LIKE '%Linux%' THEN 'Linux'
            ELSE 'Other'
        END AS platform
    FROM {{ ref('songplays') }} AS sp
),

counts AS (
    SELECT platform, COUNT(*) AS plays, COUNT(DISTINCT user_id) AS listeners
    FROM classified
    GROUP BY platform
),

total AS (
    SELECT COUNT(*) AS plays FROM {{ ref('songplays') }}
)

SELECT
    p.platform,
    COALESCE(c.plays, 0) AS plays,
    COALESCE(c.listeners, 0) AS listeners,
    COALESCE(ROUND(100.0 * COALESCE(c.plays, 0) / NULLIF(t.plays, 0), 2), 0) AS share_pct
FROM platforms AS p
CROSS JOIN total AS t
LEFT JOIN counts AS c ON c.platform = p.platform
