-- Redshift stand-in: what the database itself provides (installed by standin.py as superuser).
--
-- Schemas:
--   redshift_standin      private: the load log tables and dblink. Not on anyone's search_path.
--   redshift_standin_sys  on every client's search_path: pg_last_copy_count/id, sys_load_error_detail,
--                         sys_load_history, and copy_apply (what the proxy turns a COPY into).
--   redshift_standin_stl  stl_load_errors; left off the search_path in serverless mode, so naming it
--                         fails with "relation does not exist" as on Redshift Serverless.
--
-- Why dblink: Redshift's system tables are not transactional ("STL and STV tables are not locked in a
-- transaction ... run in a read committed isolation mode"), so a failed COPY's rejects survive the
-- client's ROLLBACK and every session sees them at once. Rows are written AND read through one
-- autonomous superuser connection per backend (each query there is its own committed transaction), so
-- even a SERIALIZABLE client transaction whose snapshot predates the COPY sees its rejects.
-- @DBLINK_CONNSTR@ is replaced by the socket connection string before this file runs.

CREATE SCHEMA redshift_standin;
CREATE SCHEMA redshift_standin_sys;
CREATE SCHEMA redshift_standin_stl;
REVOKE ALL ON SCHEMA redshift_standin FROM PUBLIC;
GRANT USAGE ON SCHEMA redshift_standin_sys, redshift_standin_stl TO PUBLIC;

CREATE EXTENSION dblink SCHEMA redshift_standin;

-- Query ids: increasing, shared by all sessions, never rolled back (a sequence).
CREATE SEQUENCE redshift_standin_sys.query_ids START 10000;
GRANT USAGE ON SEQUENCE redshift_standin_sys.query_ids TO PUBLIC;

-- One row per COPY that began loading (pg_last_copy_id moves then: docs, PG_LAST_COPY_ID).
CREATE TABLE redshift_standin.copies (
    query_id bigint PRIMARY KEY,
    pid integer NOT NULL,
    backend_start timestamptz NOT NULL,
    userid integer NOT NULL,
    database_name text NOT NULL,
    table_oid oid,
    table_name text,
    status text NOT NULL,           -- running, completed, failed
    loaded_rows bigint NOT NULL,
    error_count bigint NOT NULL,
    file_count integer,
    data_source text,
    transaction_id bigint,
    start_time timestamp NOT NULL,
    end_time timestamp
);

CREATE TABLE redshift_standin.load_errors (
    userid integer,
    tbl oid,
    starttime timestamp,
    session integer,
    query bigint,
    filename text,
    line_number bigint,
    colname text,
    type text,
    col_length text,
    position integer,
    raw_line text,
    raw_field_value text,
    err_code integer,
    err_reason text,
    transaction_id bigint,
    database_name text
);

-- The backend's autonomous connection (opened once per backend, reused; read committed there).
CREATE FUNCTION redshift_standin.autonomous() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, redshift_standin AS $$
BEGIN
    IF NOT ('redshift_standin_log' = ANY (coalesce(dblink_get_connections(), '{}'::text[]))) THEN
        PERFORM dblink_connect('redshift_standin_log', @DBLINK_CONNSTR@);
        PERFORM dblink_exec('redshift_standin_log',
                            'SET default_transaction_isolation = ''read committed''');
    END IF;
    RETURN 'redshift_standin_log';
END $$;

CREATE FUNCTION redshift_standin.exec(sql text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, redshift_standin AS $$
BEGIN
    PERFORM dblink_exec(redshift_standin.autonomous(), sql);
END $$;
REVOKE ALL ON FUNCTION redshift_standin.autonomous(), redshift_standin.exec(text) FROM PUBLIC;

-- This backend's identity: a pid alone is reused by later sessions.
CREATE FUNCTION redshift_standin.backend_start() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()
$$;

-- The COPY began loading: visible to pg_last_copy_id() from now on, whatever happens next.
CREATE FUNCTION redshift_standin_sys.copy_begin(p jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, redshift_standin AS $$
BEGIN
    PERFORM redshift_standin.exec(format(
        'INSERT INTO redshift_standin.copies VALUES (%s, %s, %L, %s, %L, %L, %L, ''running'', 0, 0, %L, %L, %s, %L, NULL)',
        (p->>'query_id')::bigint, pg_backend_pid(), redshift_standin.backend_start(),
        (SELECT oid FROM pg_roles WHERE rolname = session_user), current_database(),
        (p->>'table_oid')::oid, p->>'table_name', (p->>'files')::int, p->>'source',
        txid_current(), statement_timestamp() AT TIME ZONE 'UTC'));
END $$;

CREATE FUNCTION redshift_standin_sys.copy_end(query_id bigint, loaded bigint, errors bigint, status text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, redshift_standin AS $$
BEGIN
    PERFORM redshift_standin.exec(format(
        'UPDATE redshift_standin.copies SET loaded_rows = %s, error_count = %s, status = %L, end_time = %L '
        'WHERE query_id = %s AND pid = %s',
        loaded, errors, status, clock_timestamp() AT TIME ZONE 'UTC', query_id, pg_backend_pid()));
END $$;

CREATE FUNCTION redshift_standin_sys.copy_errors(query_id bigint, errors jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, redshift_standin AS $$
BEGIN
    PERFORM redshift_standin.exec(format(
        'INSERT INTO redshift_standin.load_errors '
        'SELECT %s, c.table_oid, c.start_time, c.pid, c.query_id, e.filename, e.line_number, e.colname, '
        '       e.type, e.col_length, e.position, e.raw_line, e.raw_field_value, e.err_code, e.err_reason, '
        '       c.transaction_id, c.database_name '
        'FROM redshift_standin.copies AS c, '
        '     jsonb_to_recordset(%L::jsonb) AS e(filename text, line_number bigint, colname text, type text, '
        '       col_length text, position integer, raw_line text, raw_field_value text, err_code integer, '
        '       err_reason text) '
        'WHERE c.query_id = %s AND c.pid = %s',
        (SELECT oid FROM pg_roles WHERE rolname = session_user), errors::text, query_id, pg_backend_pid()));
END $$;
GRANT EXECUTE ON FUNCTION redshift_standin_sys.copy_begin(jsonb),
    redshift_standin_sys.copy_end(bigint, bigint, bigint, text),
    redshift_standin_sys.copy_errors(bigint, jsonb) TO PUBLIC;

-- Reads of the log, through the autonomous connection (a fresh snapshot every time). Superusers see every
-- row, other users their own (docs: "Visibility of data in system tables and views").
CREATE FUNCTION redshift_standin_sys.load_error_rows() RETURNS SETOF redshift_standin.load_errors
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, redshift_standin AS $$
DECLARE
    me record;
BEGIN
    SELECT oid, rolsuper INTO me FROM pg_roles WHERE rolname = session_user;
    RETURN QUERY SELECT * FROM dblink(redshift_standin.autonomous(), format(
        'SELECT * FROM redshift_standin.load_errors WHERE %L::boolean OR userid = %s', me.rolsuper, me.oid))
        AS t(userid integer, tbl oid, starttime timestamp, session integer, query bigint, filename text,
             line_number bigint, colname text, type text, col_length text, position integer, raw_line text,
             raw_field_value text, err_code integer, err_reason text, transaction_id bigint,
             database_name text);
END $$;

CREATE FUNCTION redshift_standin_sys.copy_rows() RETURNS SETOF redshift_standin.copies
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, redshift_standin AS $$
DECLARE
    me record;
BEGIN
    SELECT oid, rolsuper INTO me FROM pg_roles WHERE rolname = session_user;
    RETURN QUERY SELECT * FROM dblink(redshift_standin.autonomous(), format(
        'SELECT * FROM redshift_standin.copies WHERE %L::boolean OR userid = %s', me.rolsuper, me.oid))
        AS t(query_id bigint, pid integer, backend_start timestamptz, userid integer, database_name text,
             table_oid oid, table_name text, status text, loaded_rows bigint, error_count bigint,
             file_count integer, data_source text, transaction_id bigint, start_time timestamp,
             end_time timestamp);
END $$;

-- This session's last COPY that began loading.
CREATE FUNCTION redshift_standin_sys.last_copy() RETURNS redshift_standin.copies
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, redshift_standin AS $$
DECLARE
    result redshift_standin.copies;
BEGIN
    SELECT * INTO result FROM dblink(redshift_standin.autonomous(), format(
        'SELECT * FROM redshift_standin.copies WHERE pid = %s AND backend_start = %L '
        'ORDER BY query_id DESC LIMIT 1', pg_backend_pid(), redshift_standin.backend_start()))
        AS t(query_id bigint, pid integer, backend_start timestamptz, userid integer, database_name text,
             table_oid oid, table_name text, status text, loaded_rows bigint, error_count bigint,
             file_count integer, data_source text, transaction_id bigint, start_time timestamp,
             end_time timestamp);
    RETURN result;
END $$;
GRANT EXECUTE ON FUNCTION redshift_standin_sys.last_copy() TO PUBLIC;
-- dblink's functions are PUBLIC by default: nobody but the definer functions above may use them.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA redshift_standin FROM PUBLIC;

-- docs PG_LAST_COPY_ID: "If no COPY commands have been executed in the current session, returns -1."
CREATE FUNCTION redshift_standin_sys.pg_last_copy_id() RETURNS integer
LANGUAGE sql VOLATILE AS $$
    SELECT coalesce(c.query_id::integer, -1) FROM redshift_standin_sys.last_copy() AS c
$$;

-- docs PG_LAST_COPY_COUNT: rows loaded by the last COPY; 0 when none ran or the last failed while loading.
CREATE FUNCTION redshift_standin_sys.pg_last_copy_count() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT coalesce(CASE WHEN c.status = 'completed' THEN c.loaded_rows ELSE 0 END, 0)
    FROM redshift_standin_sys.last_copy() AS c
$$;

-- STL_LOAD_ERRORS, with Redshift's CHAR columns (blank-padded; values longer than the column are cut).
CREATE VIEW redshift_standin_stl.stl_load_errors AS
SELECT e.userid,
       0 AS slice,
       e.tbl::integer AS tbl,
       e.starttime,
       e.session,
       e.query::integer AS query,
       e.filename::char(256) AS filename,
       e.line_number,
       e.colname::char(127) AS colname,
       e.type::char(10) AS type,
       e.col_length::char(10) AS col_length,
       e.position,
       e.raw_line::char(1024) AS raw_line,
       e.raw_field_value::char(1024) AS raw_field_value,
       e.err_code,
       e.err_reason::char(100) AS err_reason,
       0 AS is_partial,
       0::bigint AS start_offset,
       0::bigint AS copy_job_id
FROM redshift_standin_sys.load_error_rows() AS e;

-- SYS views number queries apart from STL's query and pg_last_copy_id() (docs, STL_QUERY: "The query
-- column in this view and the query_id column in SYS_QUERY_HISTORY are not the same identifier"):
-- here SYS's query_id is STL's query plus an offset, so a client that mixes the two finds nothing.
CREATE FUNCTION redshift_standin_sys.sys_query_id(stl_query bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT stl_query + 7000000000 $$;

-- SYS_LOAD_ERROR_DETAIL (no raw line in this view).
CREATE VIEW redshift_standin_sys.sys_load_error_detail AS
SELECT e.userid AS user_id,
       redshift_standin_sys.sys_query_id(e.query) AS query_id,
       e.transaction_id,
       e.session AS session_id,
       e.database_name::char(64) AS database_name,
       e.tbl::integer AS table_id,
       e.starttime AS start_time,
       e.filename::char(256) AS file_name,
       e.line_number,
       e.colname::char(127) AS column_name,
       e.type::char(10) AS column_type,
       e.col_length::char(10) AS column_length,
       e.position,
       e.err_code AS error_code,
       e.err_reason::char(512) AS error_message
FROM redshift_standin_sys.load_error_rows() AS e;

-- SYS_LOAD_HISTORY, a subset of its columns: one row per COPY that began loading.
CREATE VIEW redshift_standin_sys.sys_load_history AS
SELECT c.userid AS user_id,
       redshift_standin_sys.sys_query_id(c.query_id) AS query_id,
       c.transaction_id,
       c.pid AS session_id,
       c.database_name::char(64) AS database_name,
       c.status::char(30) AS status,
       c.table_name::char(136) AS table_name,
       c.start_time,
       c.end_time,
       c.data_source::char(256) AS data_source,
       c.loaded_rows,
       c.error_count,
       c.file_count,
       'json'::char(10) AS file_format
FROM redshift_standin_sys.copy_rows() AS c;

GRANT SELECT ON redshift_standin_stl.stl_load_errors, redshift_standin_sys.sys_load_error_detail,
    redshift_standin_sys.sys_load_history TO PUBLIC;

-- What the proxy sends instead of a COPY: the payload holds the converted rows and the rejects
-- (copy_emulation.py), or an error to raise. Runs as the client (INVOKER): its table, its transaction.
CREATE PROCEDURE redshift_standin_sys.copy_apply(p jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    qid bigint := (p->>'query_id')::bigint;
    nerr bigint := coalesce(jsonb_array_length(p->'errors'), 0);
    loaded bigint;
    cols text;
    exprs text;
BEGIN
    IF p ? 'error' THEN
        -- Refused before loading (syntax, access, missing objects): pg_last_copy_id() does not move.
        RAISE EXCEPTION USING MESSAGE = p->'error'->>'message', DETAIL = p->'error'->>'detail',
                              ERRCODE = p->'error'->>'sqlstate';
    END IF;
    PERFORM redshift_standin_sys.copy_begin(p);
    IF nerr > 0 THEN
        PERFORM redshift_standin_sys.copy_errors(qid, p->'errors');
    END IF;
    IF (p->>'failed')::boolean THEN
        PERFORM redshift_standin_sys.copy_end(qid, 0, nerr, 'failed');
        RAISE EXCEPTION USING ERRCODE = 'XX000', DETAIL = p->>'failure_detail',
            MESSAGE = format('Load into table ''%s'' failed.  Check ''stl_load_errors'' system table for details.',
                             p->>'table_name');
    END IF;
    SELECT string_agg(quote_ident(c->>'name'), ', ' ORDER BY i),
           string_agg(format('(r.v->>%s)::%s', i - 1, c->>'type'), ', ' ORDER BY i)
      INTO cols, exprs
      FROM jsonb_array_elements(p->'columns') WITH ORDINALITY AS t(c, i);
    EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM jsonb_array_elements($1) AS r(v)',
                   p->>'table_sql', cols, exprs)
      USING p->'rows';
    GET DIAGNOSTICS loaded = ROW_COUNT;
    IF (p->>'delay')::float8 > 0 THEN
        -- Fault knob: the COPY is mid-way (rows written, not finished) for this long.
        PERFORM pg_sleep((p->>'delay')::float8);
    END IF;
    PERFORM redshift_standin_sys.copy_end(qid, loaded, nerr, 'completed');
    RAISE INFO 'Load into table ''%'' completed, % record(s) loaded successfully.', p->>'table_name', loaded;
    IF nerr > 0 THEN
        RAISE INFO 'Load into table ''%'' completed, % record(s) could not be loaded.  Check ''stl_load_errors'' system table for details.',
            p->>'table_name', nerr;
    END IF;
END $$;
GRANT EXECUTE ON PROCEDURE redshift_standin_sys.copy_apply(jsonb) TO PUBLIC;

-- docs SUM: "BIGINT for BIGINT, SMALLINT, and INTEGER arguments" (PostgreSQL: NUMERIC for BIGINT, which
-- redshift-connector returns as Decimal). The client search_path names pg_catalog after this schema, so
-- this overload wins for bigint arguments; an overflow fails ("bigint out of range") instead of widening.
CREATE AGGREGATE redshift_standin_sys.sum(bigint) (SFUNC = int8pl, STYPE = bigint, COMBINEFUNC = int8pl,
                                                   PARALLEL = SAFE);
