//! A stand-in for a managed destination: Aiven's `aiven_extras` extension and its
//! service admin role, as they behave for pgsub (written from the extension's public
//! source and documentation, not copied from it):
//!
//! - the admin role is an ordinary role (no superuser, no `pg_create_subscription`);
//! - `pg_subscription` is closed to it (and `pg_replication_origin_status` is
//!   superuser-only, as everywhere);
//! - the extension's functions are `SECURITY DEFINER`, owned by a superuser, so a
//!   subscription made with `pg_create_subscription` belongs to the superuser: the admin
//!   role cannot ALTER or DROP it directly, only through `pg_alter_subscription_disable`,
//!   `pg_alter_subscription_enable` and `pg_drop_subscription` (disable, `slot_name =
//!   NONE`, drop), and lists subscriptions with `pg_list_all_subscriptions()` (whose
//!   connection strings carry the password).
//!
//! The one liberty taken: the real extension creates and drops slots on the source through
//! dblink when asked (`arg_slot_create`, `arg_drop_repl_slot`); the stand-in refuses those,
//! which pgsub never asks for. `pg_subscription` is a shared catalog, so the REVOKE holds
//! for the whole cluster: give the stand-in a cluster of its own.

use pgsub_testkit::Cluster;

use super::sql;

/// Installs the stand-in into `db` of `d` and creates the admin role `admin` (LOGIN,
/// `password`), which may create schemas and tables in `db`.
pub fn install(d: &Cluster, db: &str, admin: &str, password: &str) {
    sql(
        d,
        db,
        &format!(
            "REVOKE SELECT ON pg_catalog.pg_subscription FROM public;
             CREATE ROLE {admin} LOGIN PASSWORD '{password}';
             GRANT CREATE ON DATABASE {db} TO {admin};
             GRANT CREATE ON SCHEMA public TO {admin};
             {STAND_IN}"
        ),
    );
}

/// The extension's schema and functions, created by a superuser.
const STAND_IN: &str = r#"
CREATE SCHEMA aiven_extras;
GRANT USAGE ON SCHEMA aiven_extras TO public;

CREATE TYPE aiven_extras.aiven_pg_subscription AS (
    subdbid oid, subname name, subowner oid, subenabled boolean, subconninfo text,
    subslotname name, subsynccommit text, subpublications text[]);

CREATE FUNCTION aiven_extras.pg_create_subscription(
    arg_subscription_name text, arg_connection_string text, arg_publication_name text,
    arg_slot_name text, arg_slot_create boolean = false, arg_copy_data boolean = true,
    arg_origin text = 'any')
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF arg_slot_create THEN
        RAISE EXCEPTION 'stand-in: creating the slot through dblink is not supported';
    END IF;
    IF arg_origin NOT IN ('any', 'none') THEN
        RAISE EXCEPTION 'origin must be any or none, not %', arg_origin;
    END IF;
    IF arg_origin = 'none' THEN
        EXECUTE format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I WITH (slot_name = %L, create_slot = false, copy_data = %s, origin = none)',
            arg_subscription_name, arg_connection_string, arg_publication_name, arg_slot_name, arg_copy_data::text);
    ELSE
        EXECUTE format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I WITH (slot_name = %L, create_slot = false, copy_data = %s)',
            arg_subscription_name, arg_connection_string, arg_publication_name, arg_slot_name, arg_copy_data::text);
    END IF;
END $$;

CREATE FUNCTION aiven_extras.pg_alter_subscription_disable(arg_subscription_name text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    EXECUTE format('ALTER SUBSCRIPTION %I DISABLE', arg_subscription_name);
END $$;

CREATE FUNCTION aiven_extras.pg_alter_subscription_enable(arg_subscription_name text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    EXECUTE format('ALTER SUBSCRIPTION %I ENABLE', arg_subscription_name);
END $$;

CREATE FUNCTION aiven_extras.pg_drop_subscription(
    arg_subscription_name text, arg_drop_repl_slot boolean = true)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_subscription WHERE subname = arg_subscription_name) THEN
        RAISE EXCEPTION 'No subscription found for name: %', arg_subscription_name;
    END IF;
    IF arg_drop_repl_slot THEN
        RAISE EXCEPTION 'stand-in: dropping the slot through dblink is not supported';
    END IF;
    EXECUTE format('ALTER SUBSCRIPTION %I DISABLE', arg_subscription_name);
    EXECUTE format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', arg_subscription_name);
    EXECUTE format('DROP SUBSCRIPTION %I', arg_subscription_name);
END $$;

CREATE FUNCTION aiven_extras.pg_list_all_subscriptions()
RETURNS SETOF aiven_extras.aiven_pg_subscription LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog AS $$
BEGIN
    RETURN QUERY SELECT subdbid, subname, subowner, subenabled, subconninfo, subslotname,
        subsynccommit, subpublications FROM pg_subscription;
END $$;
"#;
