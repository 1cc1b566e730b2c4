//! Which platform the source runs on, recognised from the server's own settings, roles and
//! functions (never from its host name), so that a setup error says what to do there:
//! managed services refuse `ALTER SYSTEM` and have their own switches.
//!
//! | platform      | recognised by                                            |
//! |---------------|----------------------------------------------------------|
//! | Aurora        | the `aurora_version()` function                          |
//! | RDS           | the `rds.logical_replication` setting, or `rds_superuser` |
//! | Cloud SQL     | the `cloudsql.logical_decoding` setting, or `cloudsqlsuperuser` |
//! | Azure         | an `azure.*` setting, or `azure_pg_admin`                |
//! | Aiven         | the `aiven_extras` schema, or the extension available with an `avnadmin` role |
//! | self-managed  | none of these                                            |
//!
//! `aiven_extras` is open source and can be built into a self-managed server: there its
//! being merely available says nothing (and `ALTER SYSTEM` works), so an available but
//! uninstalled extension counts only beside the service's own admin role.

use crate::conn::Connection;

/// Where the source server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Amazon Aurora PostgreSQL.
    Aurora,
    /// Amazon RDS for PostgreSQL.
    Rds,
    /// Google Cloud SQL for PostgreSQL.
    CloudSql,
    /// Azure Database for PostgreSQL.
    Azure,
    /// Aiven for PostgreSQL.
    Aiven,
    /// A server the operator runs: `ALTER SYSTEM` works.
    SelfManaged,
}

/// One query for every sign: settings through `current_setting(…, true)` (NULL when
/// absent), roles through `pg_roles`, functions and schemas through `to_reg*`.
const DETECT: &str = "SELECT \
    pg_catalog.to_regproc('aurora_version') IS NOT NULL, \
    pg_catalog.current_setting('rds.logical_replication', true) IS NOT NULL \
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rds_superuser'), \
    pg_catalog.current_setting('cloudsql.logical_decoding', true) IS NOT NULL \
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'cloudsqlsuperuser'), \
    pg_catalog.current_setting('azure.extensions', true) IS NOT NULL \
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'azure_pg_admin'), \
    pg_catalog.to_regnamespace('aiven_extras') IS NOT NULL \
      OR (EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'aiven_extras') \
          AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'avnadmin'))";

impl Platform {
    /// Asks the server. A failed query (a role that may not read the catalogs) is taken as
    /// self-managed, whose advice is the generic one.
    pub async fn detect(conn: &mut Connection) -> Platform {
        let Ok(rows) = conn.simple_query(DETECT).await else {
            return Platform::SelfManaged;
        };
        let Some(row) = rows.first() else {
            return Platform::SelfManaged;
        };
        let signs: Vec<bool> = (0..5).map(|i| row.get_idx(i) == Some("t")).collect();
        Platform::from_signs(&signs)
    }

    /// The platform from the signs of [`DETECT`], in its column order.
    fn from_signs(signs: &[bool]) -> Platform {
        let order = [
            Platform::Aurora,
            Platform::Rds,
            Platform::CloudSql,
            Platform::Azure,
            Platform::Aiven,
        ];
        order
            .into_iter()
            .zip(signs)
            .find_map(|(p, &yes)| yes.then_some(p))
            .unwrap_or(Platform::SelfManaged)
    }

    /// Its name, as the operator knows it.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Aurora => "Amazon Aurora",
            Platform::Rds => "Amazon RDS",
            Platform::CloudSql => "Google Cloud SQL",
            Platform::Azure => "Azure Database for PostgreSQL",
            Platform::Aiven => "Aiven",
            Platform::SelfManaged => "a self-managed server",
        }
    }

    /// What to do when `wal_level` is not `logical`.
    pub fn wal_level_fix(self) -> String {
        match self {
            Platform::Rds => "on Amazon RDS, ALTER SYSTEM is refused: set rds.logical_replication = 1 in the instance's DB parameter group (a custom group, since the default one cannot be changed), then reboot the instance".into(),
            Platform::Aurora => "on Amazon Aurora, ALTER SYSTEM is refused: set rds.logical_replication = 1 in the DB cluster parameter group, then reboot the writer instance".into(),
            Platform::CloudSql => "on Google Cloud SQL, set the database flag cloudsql.logical_decoding = on (`gcloud sql instances patch INSTANCE --database-flags=cloudsql.logical_decoding=on`; the instance restarts)".into(),
            Platform::Azure => "on Azure Database for PostgreSQL, set the server parameter wal_level = logical (`az postgres flexible-server parameter set --resource-group RG --server-name SERVER --name wal_level --value logical`), then restart the server".into(),
            Platform::Aiven => "Aiven services run with wal_level = logical; if this one does not, ask Aiven support (ALTER SYSTEM is refused there)".into(),
            Platform::SelfManaged => "run ALTER SYSTEM SET wal_level = logical; on the source and restart the server (for example `pg_ctl restart` or `systemctl restart postgresql`)".into(),
        }
    }

    /// What to do when `user` may not open a replication connection.
    pub fn replication_role_fix(self, user: &str) -> String {
        let user = crate::protocol::quote::ident(user);
        match self {
            Platform::Rds | Platform::Aurora => format!(
                "on {}, replication is granted through a role: GRANT rds_replication TO {user}; (as the master user)",
                self.name()
            ),
            Platform::CloudSql => format!(
                "on Google Cloud SQL, run ALTER USER {user} WITH REPLICATION; as a member of cloudsqlsuperuser (the flag cloudsql.logical_decoding must be on too)"
            ),
            Platform::Azure => format!(
                "on Azure Database for PostgreSQL, run ALTER ROLE {user} WITH REPLICATION; as a member of azure_pg_admin"
            ),
            Platform::Aiven => format!(
                "on Aiven, run ALTER ROLE {user} WITH REPLICATION; as avnadmin (or connect as avnadmin, which has it)"
            ),
            Platform::SelfManaged => format!(
                "run ALTER ROLE {user} WITH REPLICATION; as a superuser, and grant SELECT on the published tables"
            ),
        }
    }

    /// How to create a publication of all tables, which needs a superuser: Aiven's
    /// `aiven_extras` does it for its administrator.
    pub fn all_tables_publication(self, name: &str) -> Option<String> {
        (self == Platform::Aiven).then(|| {
            format!(
                "on Aiven, FOR ALL TABLES needs a superuser: CREATE EXTENSION IF NOT EXISTS aiven_extras CASCADE; SELECT aiven_extras.pg_create_publication_for_all_tables({}, 'INSERT,UPDATE,DELETE');",
                crate::protocol::quote::literal(name)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sign_decides_and_none_is_self_managed() {
        assert_eq!(Platform::from_signs(&[false; 5]), Platform::SelfManaged);
        // Aurora also has RDS's settings: Aurora wins.
        assert_eq!(
            Platform::from_signs(&[true, true, false, false, false]),
            Platform::Aurora
        );
        assert_eq!(
            Platform::from_signs(&[false, true, false, false, false]),
            Platform::Rds
        );
        assert_eq!(
            Platform::from_signs(&[false, false, false, false, true]),
            Platform::Aiven
        );
        assert_eq!(Platform::from_signs(&[]), Platform::SelfManaged);
    }

    #[test]
    fn each_platform_names_its_own_switch() {
        assert!(
            Platform::Rds
                .wal_level_fix()
                .contains("rds.logical_replication = 1")
        );
        assert!(
            Platform::Aurora
                .wal_level_fix()
                .contains("cluster parameter group")
        );
        assert!(
            Platform::CloudSql
                .wal_level_fix()
                .contains("cloudsql.logical_decoding")
        );
        assert!(Platform::Azure.wal_level_fix().contains("wal_level"));
        assert!(
            Platform::SelfManaged
                .wal_level_fix()
                .contains("ALTER SYSTEM SET")
        );
        assert!(!Platform::Rds.wal_level_fix().contains("ALTER SYSTEM SET"));
        assert!(
            Platform::Rds
                .replication_role_fix("repl")
                .contains("GRANT rds_replication TO \"repl\"")
        );
        assert!(
            Platform::SelfManaged
                .replication_role_fix("Repl User")
                .contains("ALTER ROLE \"Repl User\" WITH REPLICATION")
        );
        assert!(
            Platform::Aiven
                .all_tables_publication("pub_all")
                .is_some_and(|h| h.contains("pg_create_publication_for_all_tables('pub_all'"))
        );
        assert_eq!(Platform::Rds.all_tables_publication("p"), None);
    }
}
