//! Hand-off between a native subscription and pgsub, either way, on the same slot, with
//! nothing lost or applied twice.
//!
//! Both keep the same thing: the Commit `end_lsn` of the last source transaction applied —
//! a native subscription in its replication origin (`pg_<suboid>`, `remote_lsn`), pgsub in
//! `pgsub.progress.applied_lsn`. A hand-off stops one, moves that position to the other,
//! and the other starts streaming the slot from there, skipping what was applied.
//!
//! ```text
//!  --to-pgsub   disable the subscription ─► wait for its worker to exit ─► read where it
//!               stopped ─► detach it from its slot
//!               ─► pgsub.progress(name, slot, publications, applied_lsn = that position)
//!               ─► then: pgsub sync --slot <slot>
//!  --to-native  (pgsub stopped, its slot idle) CREATE SUBSCRIPTION … WITH (create_slot =
//!               false, slot_name, copy_data = false, enabled = false) — or re-point the
//!               existing one ─► pg_replication_origin_advance(pg_<oid>, applied_lsn)
//!               ─► remove pgsub's progress rows ─► ALTER SUBSCRIPTION s ENABLE
//! ```
//!
//! Where the subscription stopped is its origin's `remote_lsn` when the role may read it
//! (it needs the subscription's oid from `pg_subscription` and SELECT on
//! `pg_replication_origin_status`). A managed service's admin role may read neither;
//! there the slot's confirmed position is exact only when nothing published follows it,
//! which holds after a write pause (`--writes-paused`): pgsub waits until the slot
//! confirms everything written before it started, disables the subscription, and checks
//! by decoding the slot (without consuming it) that no published change follows. How the
//! role alters a subscription it does not own is [`control`]'s. Everything that can be
//! checked is checked before anything is changed; a check that can only be made after
//! the subscription is disabled enables it again when it fails.
//!
//! Every statement is shown (a connection string only redacted); `--dry-run` shows them
//! and changes nothing.

pub mod control;
mod to_native;
mod to_pgsub;

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::dest::subscriptions::{self, NativeSubscription};
use crate::error::{Error, Result};
use crate::pg::client::text_rows;

pub use to_native::{PgsubPosition, pgsub_position, to_native};
pub use to_pgsub::{ToPgsubOptions, to_pgsub};

/// How long the subscription's worker gets to exit after DISABLE.
const WORKER_EXIT_WAIT: Duration = Duration::from_secs(60);

/// Runs statements on the destination, or only lists them.
pub struct Steps<'a> {
    client: &'a Client,
    dry_run: bool,
    /// What was (or would be) done, in order.
    pub said: Vec<String>,
}

impl<'a> Steps<'a> {
    /// Steps on `client`; with `dry_run` nothing is changed.
    pub fn new(client: &'a Client, dry_run: bool) -> Self {
        Steps {
            client,
            dry_run,
            said: Vec::new(),
        }
    }

    /// Runs `sql`, shown as it is.
    async fn run(&mut self, sql: &str) -> Result<()> {
        self.run_shown(sql, sql).await.map(|_| ())
    }

    /// Runs `sql`, shown as `shown` (which hides any secret in it).
    async fn run_shown(&mut self, sql: &str, shown: &str) -> Result<Vec<crate::pg::Row>> {
        self.said.push(format!("{shown};"));
        if self.dry_run {
            return Ok(Vec::new());
        }
        Ok(text_rows(
            self.client,
            sql,
            &format!("running `{shown}` on the destination"),
        )
        .await?)
    }

    fn note(&mut self, s: String) {
        self.said.push(format!("-- {s}"));
    }
}

/// Finds subscription `name` with what the role may read about it.
pub async fn find(client: &Client, name: &str) -> Result<NativeSubscription> {
    let all = subscriptions::native_subscriptions(client).await?;
    let names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    all.into_iter().find(|s| s.name == name).ok_or_else(|| {
        Error::Config(format!(
            "no subscription \"{name}\" in the destination database (it has: {}); `pgsub status --dest …` lists them",
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        ))
    })
}

/// Subscription `name`, when there is one the role may see.
async fn find_opt(client: &Client, name: &str) -> Result<Option<NativeSubscription>> {
    Ok(subscriptions::native_subscriptions(client)
        .await?
        .into_iter()
        .find(|s| s.name == name))
}

/// Waits until the subscription's worker has gone (after DISABLE).
async fn wait_for_worker_exit(client: &Client, sub_name: &str) -> Result<()> {
    let deadline = Instant::now() + WORKER_EXIT_WAIT;
    loop {
        let Some(sub) = find_opt(client, sub_name).await? else {
            return Ok(());
        };
        if sub.worker_pid.is_none() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Config(format!(
                "the worker of subscription \"{sub_name}\" (PID {}) did not exit within {} s of DISABLE; nothing else was changed: check the destination's log, then run the hand-off again",
                sub.worker_pid.unwrap_or(0),
                WORKER_EXIT_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
