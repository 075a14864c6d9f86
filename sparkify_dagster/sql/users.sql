-- users: one row per non-empty user_id seen in any event (any page, any auth).
-- Names, gender and level come from the user's latest event: latest ts, then highest
-- item_in_session (then session, source file and content, so ties are still deterministic).
WITH ranked AS (
    SELECT
        e.*,
        ROW_NUMBER() OVER (
            PARTITION BY e.user_id
            ORDER BY e.ts DESC NULLS LAST, e.item_in_session DESC NULLS LAST,
                     e.session_id DESC NULLS LAST, e.source_file DESC NULLS LAST,
                     e.level NULLS LAST, e.first_name NULLS LAST, e.last_name NULLS LAST,
                     e.gender NULLS LAST
        ) AS recency_rank
    FROM {{ ref('staging_events') }} AS e
    WHERE e.user_id IS NOT NULL AND e.user_id <> ''
{%- if affected %}
      AND e.user_id IN (SELECT user_id FROM {{ affected }})  -- only the given users
{%- endif %}
)

SELECT user_id, first_name, last_name, gender, level
FROM ranked
WHERE recency_rank = 1
