//! `pgsub decode` against a live PostgreSQL server: the managed procedure's tables and
//! publications, decoded through the real replication protocol.

mod support;

use pgsub_testkit as cluster;
use serde_json::json;
use support::*;

fn inserts(run: &Run) -> Vec<(String, serde_json::Value)> {
    run.kind("insert")
        .into_iter()
        .map(|v| (v["relation"].as_str().unwrap().to_owned(), v["new"].clone()))
        .collect()
}

#[test]
fn managed_procedure_one_table_through_pub1() {
    let c = cluster::shared();
    let db = c.create_database("managed_pub1").unwrap();
    sql(c, &db, MANAGED_SCHEMA);
    run(&[
        "slot",
        "create",
        "--source",
        &source(c, &db),
        "--slot",
        "sub1",
    ])
    .expect_code(0);
    sql(c, &db, MANAGED_ROWS);
    let out = decode(&source(c, &db), "pub1", "sub1", &["--until", "caught-up"]).expect_code(0);
    assert_eq!(
        inserts(&out),
        vec![
            ("public.test_table".to_owned(), json!({"id": "1"})),
            ("public.test_table".to_owned(), json!({"id": "2"})),
        ]
    );
    // Each INSERT statement is its own transaction; only test_table's one has rows in
    // pub1. PostgreSQL 15 skips the empty ones, older servers send them as Begin/Commit.
    let begins = out.kind("begin");
    let commits = out.kind("commit");
    assert_eq!(begins.len(), commits.len());
    assert!(!begins.is_empty());
    let rel = out.kind("relation");
    assert_eq!(rel.len(), 1, "{rel:?}");
    assert_eq!(rel[0]["relation"], "public.test_table");
    assert_eq!(rel[0]["columns"][0]["name"], "id");
    assert_eq!(rel[0]["columns"][0]["type_oid"], 23);
    // Every line carries a kind and the XLogData wal_start.
    for v in out.json() {
        assert!(v["kind"].is_string() && v["wal_start"].is_string(), "{v}");
    }
    // The commit's begin pairs up: final_lsn = commit_lsn.
    for (b, cm) in begins.iter().zip(&commits) {
        assert_eq!(lsn(b, "final_lsn"), lsn(cm, "commit_lsn"));
        assert!(lsn(cm, "end_lsn") > lsn(cm, "commit_lsn"));
    }
    assert!(
        out.stderr.contains("pgsub decode"),
        "summary on stderr: {}",
        out.stderr
    );
}

#[test]
fn managed_procedure_all_tables_through_pub_all_tables() {
    let c = cluster::shared();
    let db = c.create_database("managed_all").unwrap();
    sql(c, &db, MANAGED_SCHEMA);
    run(&[
        "slot",
        "create",
        "--source",
        &source(c, &db),
        "--slot",
        "sub_all",
    ])
    .expect_code(0);
    sql(c, &db, MANAGED_ROWS);
    let out = decode(
        &source(c, &db),
        "pub_all_tables",
        "sub_all",
        &["--until", "caught-up", "--format", "json"],
    )
    .expect_code(0);
    assert_eq!(
        inserts(&out),
        vec![
            ("public.test_table".to_owned(), json!({"id": "1"})),
            ("public.test_table".to_owned(), json!({"id": "2"})),
            ("public.test_table_2".to_owned(), json!({"id": "3"})),
            ("public.test_table_2".to_owned(), json!({"id": "4"})),
            ("public.test_table_3".to_owned(), json!({"id": "5"})),
            ("public.test_table_3".to_owned(), json!({"id": "6"})),
        ]
    );
    assert_eq!(out.kind("commit").len(), 3, "three INSERT transactions");
    // --format json: the summary is the last line, and its counts match the lines.
    let summary = out.kind("summary");
    assert_eq!(summary.len(), 1);
    let acc = &summary[0]["accounting"];
    let insert_count = acc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "insert")
        .unwrap()["count"]
        .clone();
    assert_eq!(insert_count, json!(6));
    assert_eq!(acc["transactions"]["count"], json!(3));
    let rels: Vec<_> = acc["relations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["inserts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rels,
        vec![
            ("public.test_table".to_owned(), 2),
            ("public.test_table_2".to_owned(), 2),
            ("public.test_table_3".to_owned(), 2)
        ]
    );
}

#[test]
fn updates_deletes_and_key_changes_are_decoded_with_their_row_images() {
    let c = cluster::shared();
    let db = c.create_database("rowimages").unwrap();
    sql(
        c,
        &db,
        "CREATE TABLE k (id int PRIMARY KEY, v text);
         CREATE TABLE f (a int, b text); ALTER TABLE f REPLICA IDENTITY FULL;
         CREATE PUBLICATION p FOR ALL TABLES;",
    );
    create_slot(c, &db, &db);
    sql(
        c,
        &db,
        "INSERT INTO k VALUES (1, 'one'), (2, NULL);
         UPDATE k SET v = 'uno' WHERE id = 1;
         UPDATE k SET id = 10 WHERE id = 2;
         DELETE FROM k WHERE id = 10;
         INSERT INTO f VALUES (1, 'x'), (1, 'x');
         UPDATE f SET b = 'y' WHERE ctid = (SELECT min(ctid) FROM f);
         DELETE FROM f WHERE b = 'y';",
    );
    let out = decode(&source(c, &db), "p", &db, &["--until", "caught-up"]).expect_code(0);
    let updates = out.kind("update");
    assert_eq!(updates.len(), 3);
    assert_eq!(updates[0]["new"], json!({"id": "1", "v": "uno"}));
    assert!(
        updates[0].get("key").is_none(),
        "key unchanged: no old tuple"
    );
    assert_eq!(
        updates[1]["key"],
        json!({"id": "2"}),
        "key change sends the old key only"
    );
    assert_eq!(updates[1]["new"], json!({"id": "10", "v": null}));
    assert_eq!(
        updates[2]["old"],
        json!({"a": "1", "b": "x"}),
        "REPLICA IDENTITY FULL"
    );
    assert_eq!(updates[2]["new"], json!({"a": "1", "b": "y"}));
    let deletes = out.kind("delete");
    assert_eq!(deletes[0]["key"], json!({"id": "10"}));
    assert_eq!(deletes[1]["old"], json!({"a": "1", "b": "y"}));
    let f_rel = out
        .kind("relation")
        .into_iter()
        .find(|r| r["relation"] == "public.f")
        .unwrap();
    assert_eq!(f_rel["replica_identity"], "full");
}
