-- songs: one row per song_id. If song_data holds a song_id more than once, the record that sorts first
-- by its content wins (_song_records.sql). year 0 in song_data means "unknown" and becomes NULL.
WITH {% include '_song_records.sql' %}

SELECT song_id, title, artist_id, NULLIF(year, 0) AS year, duration
FROM song_records
