-- pgsub fixture scenario: basic
-- Every row-level message kind of a plain (non-streamed) stream: the managed procedure's
-- tables, inserts, updates with and without a key change, REPLICA IDENTITY FULL with
-- duplicate rows, an unchanged TOAST value, truncates with both flags, user types
-- (enum, domain, composite, array), logical messages and a transaction with an origin.
-- min_version: 100000
-- record_flags:
-- setup
CREATE TABLE test_table (id int);
CREATE TABLE test_table_2 (id int);
CREATE TABLE test_table_3 (id int);
CREATE TABLE keyed (id int PRIMARY KEY, v text, n numeric);
CREATE TABLE full_ri (a int, b text);
ALTER TABLE full_ri REPLICA IDENTITY FULL;
CREATE TABLE toasty (id int PRIMARY KEY, big text, small int);
ALTER TABLE toasty ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE parent (id serial PRIMARY KEY, name text);
CREATE TABLE child (id serial PRIMARY KEY, parent_id int REFERENCES parent (id));
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE pair AS (x int, y text);
CREATE TABLE typed (id int PRIMARY KEY, m mood, p posint, c pair, arr int[], j jsonb, u uuid, ts timestamptz, moods mood[]);
CREATE PUBLICATION fixture_pub FOR ALL TABLES;
SELECT pg_replication_origin_create('fixture_origin');
-- workload
INSERT INTO test_table VALUES (1), (2);
INSERT INTO test_table_2 VALUES (3), (4);
INSERT INTO test_table_3 VALUES (5), (6);
BEGIN;
INSERT INTO keyed VALUES (1, 'one', 1.5), (2, NULL, 'NaN');
UPDATE keyed SET v = 'uno' WHERE id = 1;
UPDATE keyed SET id = 20 WHERE id = 2;
DELETE FROM keyed WHERE id = 20;
COMMIT;
INSERT INTO full_ri VALUES (1, 'dup'), (1, 'dup'), (2, 'x');
UPDATE full_ri SET b = 'changed' WHERE a = 2;
DELETE FROM full_ri WHERE a = 2;
INSERT INTO toasty SELECT 1, string_agg(md5(g::text), ''), 1 FROM generate_series(1, 200) g;
UPDATE toasty SET small = 2 WHERE id = 1;
INSERT INTO typed VALUES (1, 'happy', 5, ROW(1, 'a b'), ARRAY[1, NULL, 3], '{"k": [1, 2], "s": "é"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29 12:34:56.789+00', ARRAY['sad', 'ok']::mood[]);
UPDATE typed SET m = 'sad', c = ROW(2, NULL) WHERE id = 1;
INSERT INTO parent (name) VALUES ('p1');
INSERT INTO child (parent_id) VALUES (1);
TRUNCATE child RESTART IDENTITY;
INSERT INTO child (parent_id) VALUES (1);
TRUNCATE parent RESTART IDENTITY CASCADE;
SELECT pg_logical_emit_message(true, 'fixture', 'transactional hello');
SELECT pg_logical_emit_message(false, 'fixture', 'non-transactional hello');
SELECT pg_replication_origin_session_setup('fixture_origin');
BEGIN;
SELECT pg_replication_origin_xact_setup('0/ABCDEF', '2024-01-01 00:00:00+00');
INSERT INTO keyed VALUES (3, 'from an origin', 0);
COMMIT;
SELECT pg_replication_origin_session_reset();
