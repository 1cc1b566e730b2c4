-- pgsub fixture scenario: two_phase_streaming
-- A large prepared transaction streamed in blocks and prepared (Stream Prepare), then
-- committed (Commit Prepared).
-- min_version: 150000
-- record_flags: --two-phase --streaming on
-- setup
CREATE TABLE tps (id int PRIMARY KEY, pad text);
CREATE PUBLICATION fixture_pub FOR ALL TABLES;
-- workload
BEGIN;
INSERT INTO tps SELECT g, repeat('p', 100) FROM generate_series(1, 1500) g;
PREPARE TRANSACTION 'fixture_streamed';
COMMIT PREPARED 'fixture_streamed';
