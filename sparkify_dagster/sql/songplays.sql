-- songplays: one row per NextSong event of a logged-in user (non-empty user_id, non-null ts).
-- An event is identified by (user_id, session_id, item_in_session); if the logs hold it twice,
-- the latest copy wins (ts, then source file, then content), so there is never more than one row.
-- The song is the one (one record per song_id, as in songs) with the same title and artist name
-- whose duration is within 0.01 s of the event's length; among several, the closest duration,
-- then the smallest song_id.
WITH {% include '_song_records.sql' %},

plays AS {{ d.inline_cte }}(
    SELECT
        e.*,
        -- The event's key as one string: user_id, then session and item as digits ('' for null):
        -- neither holds '|', so distinct keys give distinct strings. songplay_id is its md5.
        e.user_id || '|' || COALESCE(CAST(e.session_id AS VARCHAR), '') || '|'
            || COALESCE(CAST(e.item_in_session AS VARCHAR), '') AS event_key
    FROM {{ ref('staging_events') }} AS e
    WHERE e.page = 'NextSong'
      AND e.user_id IS NOT NULL AND e.user_id <> ''
      AND e.ts IS NOT NULL
{%- if affected %}
      -- only the events of the given (user_id, session_id, item_in_session) keys, every copy of them
      AND EXISTS (SELECT 1 FROM {{ affected }} AS a
                  WHERE a.user_id = e.user_id
                    AND a.session_id IS NOT DISTINCT FROM e.session_id
                    AND a.item_in_session IS NOT DISTINCT FROM e.item_in_session)
{%- endif %}
),

-- Keys the logs hold more than once; only their copies are ranked (sorting every event cost a third
-- of the table).
copied AS (
    SELECT event_key FROM plays GROUP BY event_key HAVING COUNT(*) > 1
),

latest AS {{ d.inline_cte }}(
    SELECT p.*, 1 AS copy_rank
    FROM plays AS p
    WHERE p.event_key NOT IN (SELECT event_key FROM copied)
    UNION ALL
    SELECT *
    FROM (
        SELECT
            p.*,
            ROW_NUMBER() OVER (
                PARTITION BY p.event_key
                ORDER BY p.ts DESC, p.source_file DESC NULLS LAST, p.level NULLS LAST,
                         p.song NULLS LAST, p.artist NULLS LAST, p.length NULLS LAST,
                         p.location NULLS LAST, p.user_agent NULLS LAST
            ) AS copy_rank
        FROM plays AS p
        WHERE p.event_key IN (SELECT event_key FROM copied)
    ) AS ranked_copies
    WHERE copy_rank = 1
),

events AS {{ d.inline_cte }}(
    SELECT l.*, MD5(l.event_key) AS songplay_id FROM latest AS l
),

-- The song records of each (title, artist name). Most names belong to one record, whose match needs
-- no ranking; only events whose name several records share are ranked (ranking every event, then
-- joining the winners back by songplay_id, was most of the table's cost).
song_names AS (
    SELECT
        title,
        artist_name,
        COUNT(*) AS records,
        MIN(song_id) AS song_id,
        MIN(artist_id) AS artist_id,
        MIN(duration) AS duration
    FROM song_records
    GROUP BY title, artist_name
),

named AS {{ d.inline_cte }}(
    SELECT
        e.*,
        n.records,
        CASE WHEN ABS(n.duration - e.length) <= 0.01 THEN n.song_id END AS only_song_id,
        CASE WHEN ABS(n.duration - e.length) <= 0.01 THEN n.artist_id END AS only_artist_id
    FROM events AS e
    LEFT JOIN song_names AS n
      ON n.title = e.song
     AND n.artist_name = e.artist
),

shared_name_matches AS (
    SELECT
        e.songplay_id,
        s.song_id,
        s.artist_id,
        ROW_NUMBER() OVER (
            PARTITION BY e.songplay_id
            ORDER BY ABS(s.duration - e.length), s.song_id
        ) AS match_rank
    FROM named AS e
    JOIN song_records AS s
      ON s.title = e.song
     AND s.artist_name = e.artist
     AND ABS(s.duration - e.length) <= 0.01
    WHERE e.records > 1
)

SELECT
    e.songplay_id,
    {{ d.epoch_ms_to_timestamp('e.ts') }} AS start_time,
    e.user_id,
    e.level,
    CASE WHEN e.records = 1 THEN e.only_song_id ELSE m.song_id END AS song_id,
    CASE WHEN e.records = 1 THEN e.only_artist_id ELSE m.artist_id END AS artist_id,
    e.session_id,
    e.location,
    e.user_agent
FROM named AS e
LEFT JOIN shared_name_matches AS m
  ON m.songplay_id = e.songplay_id
 AND m.match_rank = 1
