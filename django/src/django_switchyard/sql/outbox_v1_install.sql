-- switchyard outbox schema v1: install
SELECT pg_advisory_xact_lock(1398231896, 2);

CREATE TABLE IF NOT EXISTS switchyard_outbox_meta (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version integer NOT NULL,
    store   text NOT NULL
);
INSERT INTO switchyard_outbox_meta (version, store)
    VALUES (1, md5(random()::text || clock_timestamp()::text))
    ON CONFLICT (one) DO NOTHING;

CREATE TABLE IF NOT EXISTS switchyard_outbox (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL,
    channel    text,
    ids        text[],
    event      text NOT NULL DEFAULT 'message',
    data       json NOT NULL DEFAULT 'null',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT switchyard_outbox_kind CHECK (
        kind IN ('channel', 'users', 'connections', 'broadcast', 'revoke_user', 'revoke_session')),
    CONSTRAINT switchyard_outbox_channel CHECK (
        CASE WHEN kind = 'channel'
             THEN octet_length(channel) BETWEEN 1 AND 255 AND channel !~ '[[:space:][:cntrl:]]'
             ELSE channel IS NULL END),
    CONSTRAINT switchyard_outbox_ids CHECK (
        CASE WHEN kind IN ('channel', 'broadcast') THEN ids IS NULL
             ELSE cardinality(ids) BETWEEN 1 AND 10000 AND array_position(ids, NULL) IS NULL END),
    CONSTRAINT switchyard_outbox_event CHECK (octet_length(event) BETWEEN 1 AND 128),
    CONSTRAINT switchyard_outbox_data CHECK (octet_length(data::text) <= 1048576)
);

CREATE SEQUENCE IF NOT EXISTS switchyard_outbox_pos;
CREATE TABLE IF NOT EXISTS switchyard_outbox_stamps (
    pos          bigint PRIMARY KEY,
    id           bigint NOT NULL,
    channel      text,
    "offset"     bigint,
    epoch        text,
    committed_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS switchyard_outbox_stamps_channel
    ON switchyard_outbox_stamps (channel, "offset") WHERE channel IS NOT NULL;

CREATE SEQUENCE IF NOT EXISTS switchyard_outbox_generation;
CREATE TABLE IF NOT EXISTS switchyard_channels (
    channel    text PRIMARY KEY,
    "offset"   bigint NOT NULL,
    epoch      text NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE OR REPLACE FUNCTION switchyard_outbox_epoch(channel text) RETURNS text
LANGUAGE sql STABLE AS $$
    -- A fresh sequence reads last_value 1 both before and after its first nextval: is_called tells.
    SELECT substr(md5(m.store || ':' || CASE WHEN g.is_called THEN g.last_value ELSE 0 END || ':' || channel), 1, 12)
    FROM switchyard_outbox_meta m, switchyard_outbox_generation g
$$;

CREATE OR REPLACE FUNCTION switchyard_outbox_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    stamped     bigint;
    at          timestamptz;
    head_offset bigint;
    head_epoch  text;
    payload     text;
BEGIN
    PERFORM pg_advisory_xact_lock(1398231896, 1);
    stamped := nextval('switchyard_outbox_pos');
    at := clock_timestamp();
    IF NEW.kind = 'channel' THEN
        UPDATE switchyard_channels SET "offset" = "offset" + 1, updated_at = at
            WHERE channel = NEW.channel
            RETURNING "offset", epoch INTO head_offset, head_epoch;
        IF NOT FOUND THEN
            INSERT INTO switchyard_channels AS c (channel, "offset", epoch, updated_at)
                VALUES (NEW.channel, 1, switchyard_outbox_epoch(NEW.channel), at)
                ON CONFLICT (channel) DO UPDATE SET "offset" = c."offset" + 1, updated_at = excluded.updated_at
                RETURNING c."offset", c.epoch INTO head_offset, head_epoch;
        END IF;
    END IF;
    INSERT INTO switchyard_outbox_stamps (pos, id, channel, "offset", epoch, committed_at)
        VALUES (stamped, NEW.id, NEW.channel, head_offset, head_epoch, at);
    payload := json_build_object(
        'v', 1, 'pos', stamped, 'at', extract(epoch FROM at), 'kind', NEW.kind, 'channel', NEW.channel,
        'ids', NEW.ids, 'event', NEW.event, 'data', NEW.data, 'offset', head_offset, 'epoch', head_epoch)::text;
    IF octet_length(payload) >= 8000 THEN
        payload := json_build_object('v', 1, 'pos', stamped)::text;
    END IF;
    PERFORM pg_notify('switchyard_outbox', payload);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION switchyard_outbox_written_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'switchyard_outbox rows are written once: insert a new row instead'
        USING ERRCODE = 'feature_not_supported';
END
$$;

CREATE OR REPLACE FUNCTION switchyard_outbox_publish(batch json)
RETURNS TABLE (pos bigint, "offset" bigint, epoch text)
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO switchyard_outbox (kind, channel, ids, event, data)
        SELECT e.item->>'kind', e.item->>'channel',
               CASE WHEN json_typeof(e.item->'ids') = 'array'
                    THEN ARRAY(SELECT json_array_elements_text(e.item->'ids')) END,
               coalesce(e.item->>'event', 'message'), coalesce(e.item->'data', 'null')
        FROM json_array_elements(batch) WITH ORDINALITY AS e(item, n)
        ORDER BY e.n;
    GET DIAGNOSTICS n = ROW_COUNT;
    SET CONSTRAINTS switchyard_outbox_stamp IMMEDIATE;
    RETURN QUERY SELECT s.pos, s."offset", s.epoch FROM switchyard_outbox_stamps s
        WHERE s.pos > currval('switchyard_outbox_pos') - n ORDER BY s.pos;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'switchyard_outbox'::regclass AND tgname = 'switchyard_outbox_stamp') THEN
        CREATE CONSTRAINT TRIGGER switchyard_outbox_stamp AFTER INSERT ON switchyard_outbox
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION switchyard_outbox_stamp();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'switchyard_outbox'::regclass AND tgname = 'switchyard_outbox_written_once') THEN
        CREATE TRIGGER switchyard_outbox_written_once BEFORE UPDATE ON switchyard_outbox
            FOR EACH ROW EXECUTE FUNCTION switchyard_outbox_written_once();
    END IF;
END
$$;
