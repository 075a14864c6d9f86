-- artists: one row per artist_id of the songs (one record per song_id, as in songs). One id can
-- carry several names across its songs, so the attributes come from one song record, chosen as:
-- the name used on most of the artist's songs, then the smallest name, then the smallest song_id.
-- An empty or all-spaces location becomes NULL (other locations are kept as they are).
WITH {% include '_song_records.sql' %},

named AS (
    SELECT
        s.*,
        COUNT(*) OVER (PARTITION BY s.artist_id, s.artist_name) AS songs_with_name
    FROM song_records AS s
    WHERE s.artist_id IS NOT NULL
),

ranked AS (
    SELECT
        n.*,
        ROW_NUMBER() OVER (
            PARTITION BY n.artist_id
            ORDER BY n.songs_with_name DESC, n.artist_name NULLS LAST, n.song_id
        ) AS artist_rank
    FROM named AS n
)

SELECT
    artist_id,
    artist_name AS name,
    CASE WHEN TRIM(artist_location) = '' THEN NULL ELSE artist_location END AS location,
    artist_latitude AS latitude,
    artist_longitude AS longitude
FROM ranked
WHERE artist_rank = 1
