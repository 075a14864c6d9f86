-- analytics.most_active_users: the {{ top_n }} users with the most songplays (matched to a song or
-- not), with their current attributes from users. Ties: more plays first, then the smallest user_id
-- (user ids are strings, compared as strings), so the ranking is stable.
WITH user_plays AS (
    SELECT
        sp.user_id,
        COUNT(*) AS plays,
        COUNT(DISTINCT sp.session_id) AS sessions
    FROM {{ ref('songplays') }} AS sp
    GROUP BY sp.user_id
),

ranked AS (
    SELECT
        p.*,
        ROW_NUMBER() OVER (ORDER BY p.plays DESC, p.user_id) AS play_rank
    FROM user_plays AS p
)

SELECT
    r.play_rank,
    r.user_id,
    u.first_name,
    u.last_name,
    u.level,
    r.plays,
    r.sessions
FROM ranked AS r
LEFT JOIN {{ ref('users') }} AS u ON u.user_id = r.user_id
WHERE r.play_rank <= {{ top_n }}
