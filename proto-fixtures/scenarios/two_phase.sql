-- pgsub fixture scenario: two_phase
-- Two-phase decoding: a prepared transaction that is committed (Begin Prepare, Prepare,
-- Commit Prepared) and one that is rolled back (Rollback Prepared).
-- min_version: 150000
-- record_flags: --two-phase
-- setup
CREATE TABLE tp (id int PRIMARY KEY, v text);
CREATE PUBLICATION fixture_pub FOR ALL TABLES;
-- workload
BEGIN;
INSERT INTO tp VALUES (1, 'prepared then committed');
PREPARE TRANSACTION 'fixture_commit';
COMMIT PREPARED 'fixture_commit';
BEGIN;
INSERT INTO tp VALUES (2, 'prepared then rolled back');
PREPARE TRANSACTION 'fixture_rollback';
ROLLBACK PREPARED 'fixture_rollback';
INSERT INTO tp VALUES (3, 'plain');
