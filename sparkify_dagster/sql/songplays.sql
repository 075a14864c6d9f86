-- songplays: one row per NextSong event of a logged-in user (non-empty user_id, non-null ts).
-- An event is identified by (user_id, session_id, item_in_session); if the logs hold it twice,
-- the latest copy wins (ts, then source file, then content), so there is never more than one row.
-- The song is the one (one record per song_id, as in songs) with the same title and artist name
-- whose duration is within 0.01 s of the event's length; among several, the closest duration,
-- then the smallest song_id.
WITH {% include '_song_records.sql' %},

plays AS (
    SELECT
        e.*,
        MD5(e.user_id || '|' || COALESCE(CAST(e.session_id AS VARCHAR), '') || '|'
            || COALESCE(CAST(e.item_in_session AS VARCHAR), '')) AS songplay_id,
        ROW_NUMBER() OVER (
            PARTITION BY e.user_id, e.session_id, e.item_in_session
            ORDER BY e.ts DESC, e.source_file DESC NULLS LAST, e.level NULLS LAST,
                     e.song NULLS LAST, e.artist NULLS LAST, e.length NULLS LAST,
                     e.location NULLS LAST, e.user_agent NULLS LAST
        ) AS copy_rank
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

events AS (
    SELECT * FROM plays WHERE copy_rank = 1
),

song_matches AS (
    SELECT
        e.songplay_id,
        s.song_id,
        s.artist_id,
        ROW_NUMBER() OVER (
            PARTITION BY e.songplay_id
            ORDER BY ABS(s.duration - e.length), s.song_id
        ) AS match_rank
    FROM events AS e
    JOIN song_records AS s
      ON s.title = e.song
     AND s.artist_name = e.artist
     AND ABS(s.duration - e.length) <= 0.01
)

SELECT
    e.songplay_id,
    {{ d.epoch_ms_to_timestamp('e.ts') }} AS start_time,
    e.user_id,
    e.level,
    m.song_id,
    m.artist_id,
    e.session_id,
    e.location,
    e.user_agent
FROM events AS e
LEFT JOIN song_matches AS m
  ON m.songplay_id = e.songplay_id
 AND m.match_rank = 1
