//! [`Conninfo::tokio_postgres_config`]: the same settings for connections made through
//! tokio-postgres, as far as it has them.

use std::net::IpAddr;
use std::time::Duration;

use super::text::is_space;
use super::{ChannelBindingMode, Conninfo, Host, SslMode};

impl Conninfo {
    /// The same settings for tokio-postgres: hosts (TCP and Unix), hostaddrs, ports, user,
    /// password, dbname, application_name (else `fallback_application_name`), options,
    /// connect_timeout, keepalives, tcp_user_timeout, target_session_attrs (`any`,
    /// `read-write`, `read-only`), load_balance_hosts, channel_binding, and sslmode as
    /// tokio-postgres knows it: `disable` → Disable, `allow`/`prefer` → Prefer,
    /// `require`/`verify-ca`/`verify-full` → Require (certificate checks are the TLS
    /// connector's job). Settings tokio-postgres lacks are left out.
    pub fn tokio_postgres_config(&self) -> tokio_postgres::Config {
        use tokio_postgres::config as tp;
        let mut config = tokio_postgres::Config::new();
        for host in &self.hosts {
            match host {
                Host::Tcp(name) => config.host(name.as_str()),
                Host::Unix(dir) => config.host_path(dir),
            };
        }
        for addr in self.hostaddrs() {
            if let Ok(addr) = addr.parse::<IpAddr>() {
                config.hostaddr(addr);
            }
        }
        for &port in &self.ports {
            config.port(port);
        }
        if let Some(user) = &self.user {
            config.user(user.as_str());
        }
        if let Some(password) = &self.password {
            config.password(password.as_bytes());
        }
        if let Some(dbname) = &self.dbname {
            config.dbname(dbname.as_str());
        }
        if let Some(name) = self
            .application_name
            .as_ref()
            .or_else(|| self.other.get("fallback_application_name"))
        {
            config.application_name(name.as_str());
        }
        if let Some(options) = &self.options {
            config.options(options.as_str());
        }
        if let Some(timeout) = self.connect_timeout.filter(|t| !t.is_zero()) {
            config.connect_timeout(timeout);
        }
        config.ssl_mode(match self.sslmode {
            SslMode::Disable => tp::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => tp::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tp::SslMode::Require,
        });
        config.channel_binding(match self.channel_binding {
            ChannelBindingMode::Disable => tp::ChannelBinding::Disable,
            ChannelBindingMode::Prefer => tp::ChannelBinding::Prefer,
            ChannelBindingMode::Require => tp::ChannelBinding::Require,
        });
        match self.target_session_attrs.as_deref() {
            Some("read-write") => {
                config.target_session_attrs(tp::TargetSessionAttrs::ReadWrite);
            }
            Some("read-only") => {
                config.target_session_attrs(tp::TargetSessionAttrs::ReadOnly);
            }
            _ => {}
        }
        if self.other.get("load_balance_hosts").map(String::as_str) == Some("random") {
            config.load_balance_hosts(tp::LoadBalanceHosts::Random);
        }
        self.apply_tcp_settings(&mut config);
        config
    }

    /// keepalives, keepalives_idle, keepalives_interval, keepalives_count, tcp_user_timeout.
    fn apply_tcp_settings(&self, config: &mut tokio_postgres::Config) {
        let int = |key: &str| {
            self.other
                .get(key)
                .and_then(|v| v.trim_matches(is_space).parse::<i64>().ok())
        };
        let positive = |key: &str| {
            int(key)
                .and_then(|v| u64::try_from(v).ok())
                .filter(|&v| v > 0)
        };
        if let Some(on) = int("keepalives") {
            config.keepalives(on != 0);
        }
        if let Some(seconds) = positive("keepalives_idle") {
            config.keepalives_idle(Duration::from_secs(seconds));
        }
        if let Some(seconds) = positive("keepalives_interval") {
            config.keepalives_interval(Duration::from_secs(seconds));
        }
        if let Some(count) = positive("keepalives_count").and_then(|c| u32::try_from(c).ok()) {
            config.keepalives_retries(count);
        }
        if let Some(millis) = positive("tcp_user_timeout") {
            config.tcp_user_timeout(Duration::from_millis(millis));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::conninfo::tests::parse;

    #[test]
    fn tokio_postgres_config_carries_the_settings() {
        use tokio_postgres::config as tp;
        let info = parse(
            "host=db1,/tmp port=5433 user=u password=pw dbname=d application_name=app options='-c x=1' connect_timeout=10 sslmode=verify-full channel_binding=require keepalives_idle=30 target_session_attrs=read-write hostaddr=10.0.0.1,10.0.0.2",
        );
        let config = info.tokio_postgres_config();
        assert_eq!(
            config.get_hosts(),
            &[
                tp::Host::Tcp("db1".to_owned()),
                tp::Host::Unix(PathBuf::from("/tmp"))
            ]
        );
        let addrs: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        assert_eq!(config.get_hostaddrs(), addrs.as_slice());
        assert_eq!(config.get_ports(), &[5433]);
        assert_eq!(config.get_user(), Some("u"));
        assert_eq!(config.get_password(), Some(&b"pw"[..]));
        assert_eq!(config.get_dbname(), Some("d"));
        assert_eq!(config.get_application_name(), Some("app"));
        assert_eq!(config.get_options(), Some("-c x=1"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(10)));
        assert_eq!(config.get_ssl_mode(), tp::SslMode::Require);
        assert_eq!(config.get_channel_binding(), tp::ChannelBinding::Require);
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(
            config.get_target_session_attrs(),
            tp::TargetSessionAttrs::ReadWrite
        );

        let ssl = |mode: &str| {
            parse(&format!("sslmode={mode}"))
                .tokio_postgres_config()
                .get_ssl_mode()
        };
        assert_eq!(ssl("disable"), tp::SslMode::Disable);
        assert_eq!(ssl("allow"), tp::SslMode::Prefer);
        assert_eq!(ssl("prefer"), tp::SslMode::Prefer);
        assert_eq!(ssl("require"), tp::SslMode::Require);
        assert_eq!(ssl("verify-ca"), tp::SslMode::Require);
        let config = parse("connect_timeout=0").tokio_postgres_config();
        assert_eq!(config.get_connect_timeout(), None);
    }
}
