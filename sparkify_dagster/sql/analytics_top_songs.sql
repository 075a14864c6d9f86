-- analytics.top_songs: the {{ top_n }} most played songs. Only songplays matched to a song count
-- (song_id not null). Ties: more plays first, then the smallest song_id, so the ranking is stable.
WITH song_plays AS (
    SELECT
        sp.song_id,
        COUNT(*) AS plays,
        COUNT(DISTINCT sp.user_id) AS listeners
    FROM {{ ref('songplays') }} AS sp
    WHERE sp.song_id IS NOT NULL
    GROUP BY sp.song_id
),

ranked AS (
    SELECT
        p.*,
        ROW_NUMBER() OVER (ORDER BY p.plays DESC, p.song_id) AS play_rank
    FROM song_plays AS p
)

SELECT
    r.play_rank,
    r.song_id,
    s.title,
    s.artist_id,
    a.name AS artist_name,
    r.plays,
    r.listeners
FROM ranked AS r
LEFT JOIN {{ ref('songs') }} AS s ON s.song_id = r.song_id
LEFT JOIN {{ ref('artists') }} AS a ON a.artist_id = s.artist_id
WHERE r.play_rank <= {{ top_n }}
