-- artists: one row per artist_id. One id can carry several names across its songs, so the
-- attributes come from one song record, chosen as: the name used on most of the artist's songs,
-- then the smallest name, then the smallest song_id. An empty location becomes NULL.
WITH named AS (
    SELECT
        s.*,
        COUNT(*) OVER (PARTITION BY s.artist_id, s.artist_name) AS songs_with_name
    FROM {{ ref('staging_songs') }} AS s
    WHERE s.artist_id IS NOT NULL
),

ranked AS (
    SELECT
        n.*,
        ROW_NUMBER() OVER (
            PARTITION BY n.artist_id
            ORDER BY n.songs_with_name DESC, n.artist_name NULLS LAST, n.song_id NULLS LAST,
                     n.source_file NULLS LAST
        ) AS record_rank
    FROM named AS n
)

SELECT
    artist_id,
    artist_name AS name,
    NULLIF(TRIM(artist_location), '') AS location,
    artist_latitude AS latitude,
    artist_longitude AS longitude
FROM ranked
WHERE record_rank = 1
