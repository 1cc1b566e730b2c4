//! Who stops, starts, detaches and creates a native subscription, and with which
//! statements.
//!
//! `ALTER SUBSCRIPTION` and `DROP SUBSCRIPTION` need the subscription's owner (or a
//! superuser). On a managed destination a subscription made with
//! `aiven_extras.pg_create_subscription` belongs to the extension's owner, a superuser;
//! the service's admin role acts on it only through the extension's `SECURITY DEFINER`
//! functions:
//!
//! | step    | as the owner                                  | through `aiven_extras`                                 |
//! |---------|-----------------------------------------------|--------------------------------------------------------|
//! | disable | `ALTER SUBSCRIPTION s DISABLE`                | `pg_alter_subscription_disable('s')`                   |
//! | enable  | `ALTER SUBSCRIPTION s ENABLE`                 | `pg_alter_subscription_enable('s')`                    |
//! | detach  | `ALTER SUBSCRIPTION s SET (slot_name = NONE)` | `pg_drop_subscription('s', false)`: disables it, sets `slot_name = NONE` and drops it; the slot stays |
//! | create  | `CREATE SUBSCRIPTION …` (then advance its origin) | `pg_create_subscription('s', conninfo, 'pub', 'slot', false, false)`: enabled at once, from the slot's confirmed position |

use tokio_postgres::Client;

use crate::dest::subscriptions::{NativeSubscription, may_call};
use crate::error::{Error, Result};
use crate::pg::client::first_value;
use crate::pg::ident::{ident, literal};

/// The managed service's extension.
pub const AIVEN_EXTRAS: &str = "aiven_extras";

/// The functions that stop, start and detach a subscription through it.
const AIVEN_ALTER: [&str; 3] = [
    "pg_alter_subscription_disable(text)",
    "pg_alter_subscription_enable(text)",
    "pg_drop_subscription(text,boolean)",
];

/// The function that creates a subscription on an existing slot through it: with an
/// `origin` argument in newer versions, without one in older; both take the six used here.
const AIVEN_CREATE: [&str; 2] = [
    "pg_create_subscription(text,text,text,text,boolean,boolean,text)",
    "pg_create_subscription(text,text,text,text,boolean,boolean)",
];

/// How a subscription is altered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The role has the owner's privileges: plain `ALTER SUBSCRIPTION`.
    Owner,
    /// Through `aiven_extras`' functions.
    Extension,
}

/// The role's name, for messages.
pub async fn current_role(client: &Client) -> Result<String> {
    Ok(
        first_value(client, "SELECT current_user", "reading the role's name")
            .await?
            .unwrap_or_default(),
    )
}

impl Control {
    /// How the role may alter `sub`; an error (exit 2) when it may not at all.
    pub async fn of(client: &Client, sub: &NativeSubscription) -> Result<Self> {
        if sub.owned {
            return Ok(Control::Owner);
        }
        if may_call(client, AIVEN_EXTRAS, &AIVEN_ALTER).await? {
            return Ok(Control::Extension);
        }
        Err(Error::Config(format!(
            "role {} does not own subscription \"{}\" (its owner is {}), so it may not ALTER it, and {AIVEN_EXTRAS}'s pg_alter_subscription_disable/enable and pg_drop_subscription are not available to it: nothing was changed; hand off as the subscription's owner or a superuser",
            current_role(client).await?,
            sub.name,
            sub.owner.as_deref().unwrap_or("another role")
        )))
    }

    /// Stops the subscription's worker.
    pub fn disable(self, sub: &str) -> String {
        self.statement(sub, "DISABLE", "pg_alter_subscription_disable", "")
    }

    /// Starts it again.
    pub fn enable(self, sub: &str) -> String {
        self.statement(sub, "ENABLE", "pg_alter_subscription_enable", "")
    }

    /// Lets go of its slot, which stays on the source; through the extension the
    /// subscription itself is dropped, the only way it offers.
    pub fn detach(self, sub: &str) -> String {
        self.statement(
            sub,
            "SET (slot_name = NONE)",
            "pg_drop_subscription",
            ", false",
        )
    }

    /// `ALTER SUBSCRIPTION sub ALTER`, or the extension's `function(sub ARGS)`.
    fn statement(self, sub: &str, alter: &str, function: &str, args: &str) -> String {
        match self {
            Control::Owner => format!("ALTER SUBSCRIPTION {} {alter}", ident(sub)),
            Control::Extension => {
                format!("SELECT {AIVEN_EXTRAS}.{function}({}{args})", literal(sub))
            }
        }
    }
}

/// The role may create a subscription itself: a superuser, or on 16+ a member of
/// `pg_create_subscription` with CREATE on the database.
pub async fn may_create_subscription(client: &Client) -> Result<bool> {
    Ok(first_value(
        client,
        "SELECT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) \
         OR CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 160000 \
                 THEN pg_catalog.pg_has_role(current_user, 'pg_create_subscription', 'USAGE') \
                      AND pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') \
                 ELSE false END",
        "checking whether the destination role may create subscriptions",
    )
    .await?
    .as_deref()
        == Some("t"))
}

/// The role may create one through `aiven_extras.pg_create_subscription`.
pub async fn may_create_through_extension(client: &Client) -> Result<bool> {
    for signature in AIVEN_CREATE {
        if may_call(client, AIVEN_EXTRAS, &[signature]).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `aiven_extras.pg_create_subscription` on an existing slot, without a copy: the
/// statement run and the one shown (its connection string redacted).
pub fn create_through_extension(
    sub: &str,
    conninfo: &str,
    publication: &str,
    slot: &str,
) -> (String, String) {
    let call = |c: &str| {
        format!(
            "SELECT {AIVEN_EXTRAS}.pg_create_subscription({}, {}, {}, {}, false, false)",
            literal(sub),
            literal(c),
            literal(publication),
            literal(slot)
        )
    };
    (call(conninfo), call(&crate::conninfo::redact(conninfo)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_for_the_owner_alter_the_subscription() {
        let c = Control::Owner;
        assert_eq!(c.disable("Sub 1"), "ALTER SUBSCRIPTION \"Sub 1\" DISABLE");
        assert_eq!(c.enable("s"), "ALTER SUBSCRIPTION \"s\" ENABLE");
        assert_eq!(
            c.detach("s"),
            "ALTER SUBSCRIPTION \"s\" SET (slot_name = NONE)"
        );
    }

    #[test]
    fn statements_through_the_extension_call_its_functions_with_literals() {
        let c = Control::Extension;
        assert_eq!(
            c.disable("it's"),
            "SELECT aiven_extras.pg_alter_subscription_disable('it''s')"
        );
        assert_eq!(
            c.detach("s"),
            "SELECT aiven_extras.pg_drop_subscription('s', false)"
        );
    }

    #[test]
    fn a_subscription_created_through_the_extension_is_shown_without_its_password() {
        let (run, shown) = create_through_extension("s", "host=h password=Sekr1t", "pub", "slot");
        assert!(run.contains("password=Sekr1t"), "{run}");
        assert!(
            !shown.contains("Sekr1t") && shown.contains("password=********"),
            "{shown}"
        );
        assert!(shown.ends_with("'pub', 'slot', false, false)"), "{shown}");
    }
}
