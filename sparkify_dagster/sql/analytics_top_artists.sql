-- analytics.top_artists: the {{ top_n }} most played artists. Only songplays matched to a song count
-- (artist_id not null). Ties: more plays first, then the smallest artist_id, so the ranking is stable.
WITH artist_plays AS (
    SELECT
        sp.artist_id,
        COUNT(*) AS plays,
        COUNT(DISTINCT sp.song_id) AS songs_played,
        COUNT(DISTINCT sp.user_id) AS listeners
    FROM {{ ref('songplays') }} AS sp
    WHERE sp.artist_id IS NOT NULL
    GROUP BY sp.artist_id
),

ranked AS (
    SELECT
        p.*,
        ROW_NUMBER() OVER (ORDER BY p.plays DESC, p.artist_id) AS play_rank
    FROM artist_plays AS p
)

SELECT
    r.play_rank,
    r.artist_id,
    a.name,
    r.plays,
    r.songs_played,
    r.listeners
FROM ranked AS r
LEFT JOIN {{ ref('artists') }} AS a ON a.artist_id = r.artist_id
WHERE r.play_rank <= {{ top_n }}
