//! The authentication exchange: trust, cleartext password, MD5 and SCRAM-SHA-256, with
//! channel binding (`SCRAM-SHA-256-PLUS`, `tls-server-end-point`) under TLS.
//!
//! `channel_binding=prefer` (the default) uses binding when the connection is TLS and the
//! server offers it; `require` refuses to authenticate without it; `disable` never uses
//! it. The password itself never leaves this module except hashed as the method needs,
//! and no error built here contains it.

use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;

use super::error::ConnError;
use super::{Connection, unexpected};
use crate::conninfo::{ChannelBindingMode, Conninfo};
use crate::protocol::backend::{Authentication, BackendMessage};

const CONTEXT: &str = "authenticating";

fn missing_password(user: &str) -> ConnError {
    ConnError::Auth {
        user: user.to_owned(),
        reason: "the server asks for a password and none was given: add password=… to the connection string, set PGPASSWORD, or add a line to ~/.pgpass".into(),
    }
}

fn method_name(code: i32) -> &'static str {
    match code {
        2 => "Kerberos V5",
        6 => "SCM credentials",
        7 | 8 => "GSSAPI",
        9 => "SSPI",
        _ => "an unknown method",
    }
}

pub(super) async fn authenticate(
    conn: &mut Connection,
    info: &Conninfo,
    user: &str,
) -> Result<(), ConnError> {
    let password = info.password.as_deref();
    let mut scram: Option<ScramSha256> = None;
    loop {
        let msg = conn.read_message(CONTEXT).await?;
        let auth = match msg {
            BackendMessage::Authentication(a) => a,
            BackendMessage::ErrorResponse(error) => {
                return Err(ConnError::Server {
                    context: format!("connecting to {} as user \"{user}\"", conn.target),
                    error,
                });
            }
            other => return Err(unexpected(CONTEXT, &other)),
        };
        if info.channel_binding == ChannelBindingMode::Require
            && !matches!(
                auth,
                Authentication::Sasl { .. }
                    | Authentication::SaslContinue(_)
                    | Authentication::SaslFinal(_)
            )
            && scram.is_none()
        {
            return Err(ConnError::Auth {
                user: user.to_owned(),
                reason:
                    "channel_binding=require, but the server did not ask for SCRAM authentication"
                        .into(),
            });
        }
        match auth {
            Authentication::Ok => {
                if info.channel_binding == ChannelBindingMode::Require && scram.is_none() {
                    return Err(ConnError::Auth {
                        user: user.to_owned(),
                        reason: "channel_binding=require, but the server accepted the connection without SCRAM authentication".into(),
                    });
                }
                return Ok(());
            }
            Authentication::CleartextPassword => {
                let pw = password.ok_or_else(|| missing_password(user))?;
                frontend::password_message(pw.as_bytes(), conn.wbuf())
                    .map_err(|e| ConnError::io(CONTEXT, e))?;
                conn.flush(CONTEXT).await?;
            }
            Authentication::Md5Password { salt } => {
                let pw = password.ok_or_else(|| missing_password(user))?;
                let hash = postgres_protocol::authentication::md5_hash(
                    user.as_bytes(),
                    pw.as_bytes(),
                    salt,
                );
                frontend::password_message(hash.as_bytes(), conn.wbuf())
                    .map_err(|e| ConnError::io(CONTEXT, e))?;
                conn.flush(CONTEXT).await?;
            }
            Authentication::Sasl { mechanisms } => {
                let pw = password.ok_or_else(|| missing_password(user))?;
                let has = |m: &str| mechanisms.iter().any(|x| x == m);
                let end_point = conn.tls_server_end_point();
                let (mechanism, binding) = match (&end_point, info.channel_binding) {
                    (Some(hash), ChannelBindingMode::Prefer | ChannelBindingMode::Require)
                        if has(sasl::SCRAM_SHA_256_PLUS) =>
                    {
                        (
                            sasl::SCRAM_SHA_256_PLUS,
                            ChannelBinding::tls_server_end_point(hash.clone()),
                        )
                    }
                    (_, ChannelBindingMode::Require) => {
                        return Err(ConnError::Auth {
                            user: user.to_owned(),
                            reason: if end_point.is_none() {
                                "channel_binding=require needs a TLS connection: set sslmode=require or stronger".into()
                            } else {
                                "channel_binding=require, but the server does not offer SCRAM-SHA-256-PLUS".into()
                            },
                        });
                    }
                    (Some(_), ChannelBindingMode::Prefer) if has(sasl::SCRAM_SHA_256) => {
                        (sasl::SCRAM_SHA_256, ChannelBinding::unrequested())
                    }
                    _ if has(sasl::SCRAM_SHA_256) => {
                        (sasl::SCRAM_SHA_256, ChannelBinding::unsupported())
                    }
                    _ => {
                        return Err(ConnError::Auth {
                            user: user.to_owned(),
                            reason: format!(
                                "the server offers SASL mechanisms {mechanisms:?}, none of which pgsub supports (SCRAM-SHA-256, SCRAM-SHA-256-PLUS)"
                            ),
                        });
                    }
                };
                let s = ScramSha256::new(pw.as_bytes(), binding);
                frontend::sasl_initial_response(mechanism, s.message(), conn.wbuf())
                    .map_err(|e| ConnError::io(CONTEXT, e))?;
                conn.flush(CONTEXT).await?;
                scram = Some(s);
            }
            Authentication::SaslContinue(data) => {
                let s = scram.as_mut().ok_or_else(|| ConnError::Unexpected {
                    context: CONTEXT.into(),
                    got: "SASLContinue before SASL started".into(),
                })?;
                s.update(&data).map_err(|e| scram_failed(user, e))?;
                frontend::sasl_response(s.message(), conn.wbuf())
                    .map_err(|e| ConnError::io(CONTEXT, e))?;
                conn.flush(CONTEXT).await?;
            }
            Authentication::SaslFinal(data) => {
                let s = scram.as_mut().ok_or_else(|| ConnError::Unexpected {
                    context: CONTEXT.into(),
                    got: "SASLFinal before SASL started".into(),
                })?;
                s.finish(&data).map_err(|e| scram_failed(user, e))?;
            }
            Authentication::Unsupported(code) => {
                return Err(ConnError::Auth {
                    user: user.to_owned(),
                    reason: format!(
                        "the server asks for {} authentication (code {code}), which pgsub does not support; use scram-sha-256, md5 or password for this user in pg_hba.conf",
                        method_name(code)
                    ),
                });
            }
        }
    }
}

fn scram_failed(user: &str, e: std::io::Error) -> ConnError {
    ConnError::Auth {
        user: user.to_owned(),
        reason: format!(
            "SCRAM exchange failed (the server could not prove it knows the password): {e}"
        ),
    }
}
