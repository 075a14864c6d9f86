-- users: one row per non-empty user_id seen in any event (any page, any auth).
-- Names, gender and level come from the user's latest event: latest ts, then highest
-- item_in_session (then session, source file and content, so ties are still deterministic).
-- Only the events at the user's latest ts can rank first (a null ts ranks last), so just those are
-- ranked: a small aggregate over all events instead of sorting every event of every user.
WITH latest_ts AS (
    SELECT e.user_id, MAX(e.ts) AS ts
    FROM {{ ref('staging_events') }} AS e
    WHERE e.user_id IS NOT NULL AND e.user_id <> ''
{%- if affected %}
      AND e.user_id IN (SELECT user_id FROM {{ affected }})  -- only the given users
{%- endif %}
    GROUP BY e.user_id
),

ranked AS (
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
    JOIN latest_ts AS l
      ON l.user_id = e.user_id
    WHERE e.ts = l.ts
       OR l.ts IS NULL  -- every event of the user has a null ts: all of them tie on ts
)

SELECT user_id, first_name, last_name, gender, level
FROM ranked
WHERE recency_rank = 1
