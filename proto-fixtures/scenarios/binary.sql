-- pgsub fixture scenario: binary
-- Column values in binary format (binary=true): 'b' tuple columns of several types,
-- and NULL.
-- min_version: 140000
-- record_flags: --binary on
-- setup
CREATE TABLE bin (id int PRIMARY KEY, f float8, b bytea, t text, ts timestamptz, n numeric, big bigint);
CREATE PUBLICATION fixture_pub FOR ALL TABLES;
-- workload
INSERT INTO bin VALUES (1, 1.5, '\x00ff10', 'text', '2024-02-29 12:34:56.789+00', 12345.678, -9223372036854775808);
UPDATE bin SET f = 'Infinity', b = NULL WHERE id = 1;
DELETE FROM bin WHERE id = 1;
