{#- One record per song_id: if song_data holds a song_id in several files, the first file by key wins.
    Shared by songs, artists and songplays, so a song has the same attributes everywhere. -#}
song_records AS (
    SELECT *
    FROM (
        SELECT
            s.*,
            ROW_NUMBER() OVER (
                PARTITION BY s.song_id
                ORDER BY s.source_file NULLS LAST, s.title NULLS LAST, s.artist_id NULLS LAST,
                         s.duration NULLS LAST, s.year NULLS LAST
            ) AS record_rank
        FROM {{ ref('staging_songs') }} AS s
        WHERE s.song_id IS NOT NULL
    ) AS ranked_songs
    WHERE record_rank = 1
)
