-- pgsub fixture scenario: streaming
-- A transaction larger than logical_decoding_work_mem (64kB) streamed in blocks with
-- streaming=on: inserts, a rolled-back savepoint (Stream Abort of a subtransaction), a
-- released savepoint, updates and deletes, committed (Stream Commit); then a regular
-- transaction, then a large transaction that is rolled back (Stream Abort). The variant
-- streams with streaming=parallel, whose Stream Abort messages carry the abort position
-- and time.
-- min_version: 140000
-- record_flags: --streaming on
-- variant streaming_parallel: min_version 160000; record_flags --streaming parallel
-- setup
CREATE TABLE big (id int PRIMARY KEY, pad text);
CREATE TABLE small (id int);
CREATE PUBLICATION fixture_pub FOR ALL TABLES;
-- workload
BEGIN;
INSERT INTO big SELECT g, repeat('a', 100) FROM generate_series(1, 1000) g;
SAVEPOINT s1;
INSERT INTO big SELECT g, repeat('b', 100) FROM generate_series(1001, 2000) g;
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
UPDATE big SET pad = repeat('c', 100) WHERE id <= 500;
RELEASE SAVEPOINT s2;
DELETE FROM big WHERE id > 900;
COMMIT;
INSERT INTO small VALUES (1);
BEGIN;
INSERT INTO big SELECT g, repeat('d', 100) FROM generate_series(5001, 6000) g;
ROLLBACK;
INSERT INTO small VALUES (2);
