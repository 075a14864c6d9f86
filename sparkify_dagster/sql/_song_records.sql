{#- One record per song_id. If song_data holds a song_id more than once, the record that sorts first by
    its content wins: title, artist_id, artist_name, duration, year, then the artist's location and
    coordinates. Only the content decides (not the file it came from: a Redshift COPY from a manifest
    does not say which file a row came from), so both engines pick the same record, and two records
    equal in every column are interchangeable. Shared by songs, artists and songplays, so a song has
    the same attributes everywhere. -#}
song_records AS (
    SELECT *
    FROM (
        SELECT
            s.*,
            ROW_NUMBER() OVER (
                PARTITION BY s.song_id
                ORDER BY s.title NULLS LAST, s.artist_id NULLS LAST, s.artist_name NULLS LAST,
                         s.duration NULLS LAST, s.year NULLS LAST, s.artist_location NULLS LAST,
                         s.artist_latitude NULLS LAST, s.artist_longitude NULLS LAST, s.num_songs NULLS LAST
            ) AS record_rank
        FROM {{ ref('staging_songs') }} AS s
        WHERE s.song_id IS NOT NULL
    ) AS ranked_songs
    WHERE record_rank = 1
)
