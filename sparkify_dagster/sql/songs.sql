-- songs: one row per song_id. If song_data holds a song_id twice, the record from the first file
-- (by key) wins. year 0 in song_data means "unknown" and becomes NULL.
WITH ranked AS (
    SELECT
        s.*,
        ROW_NUMBER() OVER (
            PARTITION BY s.song_id
            ORDER BY s.source_file NULLS LAST, s.title NULLS LAST, s.artist_id NULLS LAST,
                     s.duration NULLS LAST, s.year NULLS LAST
        ) AS record_rank
    FROM {{ ref('staging_songs') }} AS s
    WHERE s.song_id IS NOT NULL
)

SELECT song_id, title, artist_id, NULLIF(year, 0) AS year, duration
FROM ranked
WHERE record_rank = 1
