//! The backend messages a replication connection meets, parsed from [`Frame`]s.
//!
//! `postgres-protocol` has parsers for most of these, but not for CopyBothResponse
//! (`'W'`), and it reserves whatever length a server announces; pgsub parses the handful
//! it needs here, with the same checked [`Reader`] as the rest of the core. Error and
//! notice fields become a [`ServerError`] (severity, SQLSTATE, message, detail, hint).

use bytes::Bytes;

use super::frame::Frame;
use super::reader::{DecodeError, DecodeErrorKind, Reader, TagByte};

/// What the server asks for during authentication (`'R'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// `AuthenticationOk`.
    Ok,
    /// `AuthenticationCleartextPassword`.
    CleartextPassword,
    /// `AuthenticationMD5Password` with its salt.
    Md5Password {
        /// Four random bytes to hash the password with.
        salt: [u8; 4],
    },
    /// `AuthenticationSASL` with the mechanisms the server offers.
    Sasl {
        /// Mechanism names, e.g. `SCRAM-SHA-256`, `SCRAM-SHA-256-PLUS`.
        mechanisms: Vec<String>,
    },
    /// `AuthenticationSASLContinue`.
    SaslContinue(Bytes),
    /// `AuthenticationSASLFinal`.
    SaslFinal(Bytes),
    /// Any method pgsub does not implement (Kerberos, GSSAPI, SSPI …), by code.
    Unsupported(i32),
}

/// The fields of an ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerError {
    /// `S`/`V`: ERROR, FATAL, PANIC, WARNING, NOTICE …
    pub severity: String,
    /// `C`: the SQLSTATE code.
    pub code: String,
    /// `M`: the primary message.
    pub message: String,
    /// `D`: detail.
    pub detail: Option<String>,
    /// `H`: hint.
    pub hint: Option<String>,
    /// `W`: where it happened.
    pub context: Option<String>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity, self.message, self.code
        )?;
        if let Some(d) = &self.detail {
            write!(f, "; DETAIL: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; HINT: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

/// A column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
}

/// The backend messages of startup, simple query and CopyBoth.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendMessage {
    /// `'R'`
    Authentication(Authentication),
    /// `'S'`: a run-time parameter's value.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Its value.
        value: String,
    },
    /// `'K'`: cancellation key.
    BackendKeyData {
        /// Backend process ID.
        process_id: i32,
    },
    /// `'Z'`: ready for a new query, with the transaction status (`I`, `T`, `E`).
    ReadyForQuery(u8),
    /// `'E'`
    ErrorResponse(ServerError),
    /// `'N'`
    NoticeResponse(ServerError),
    /// `'T'`
    RowDescription(Vec<FieldDescription>),
    /// `'D'`: one row; `None` for NULL.
    DataRow(Vec<Option<Bytes>>),
    /// `'C'`: the command tag.
    CommandComplete(String),
    /// `'I'`
    EmptyQueryResponse,
    /// `'W'`: the connection is now in CopyBoth mode.
    CopyBothResponse,
    /// `'H'`
    CopyOutResponse,
    /// `'G'`
    CopyInResponse,
    /// `'d'`: a CopyData payload.
    CopyData(Bytes),
    /// `'c'`
    CopyDone,
    /// `'v'`: the server speaks an older minor protocol version.
    NegotiateProtocolVersion {
        /// Newest minor version the server supports.
        minor: i32,
    },
    /// `'A'`: LISTEN/NOTIFY traffic, ignored.
    NotificationResponse,
}

impl BackendMessage {
    /// Parses a frame. Unknown types are an error: on a replication connection they mean
    /// the stream is out of step.
    pub fn parse(frame: Frame) -> Result<Self, DecodeError> {
        let mut r = Reader::new(frame.body);
        let msg = match frame.tag {
            b'R' => BackendMessage::Authentication(parse_authentication(&mut r)?),
            b'S' => BackendMessage::ParameterStatus {
                name: r.cstr("parameter name")?,
                value: r.cstr("parameter value")?,
            },
            b'K' => {
                let process_id = r.i32("process id")?;
                // The secret key is 4 bytes in protocol 3.0 and longer in 3.2.
                let _ = r.rest();
                BackendMessage::BackendKeyData { process_id }
            }
            b'Z' => BackendMessage::ReadyForQuery(r.u8("transaction status")?),
            b'E' => BackendMessage::ErrorResponse(parse_fields(&mut r)?),
            b'N' => BackendMessage::NoticeResponse(parse_fields(&mut r)?),
            b'T' => BackendMessage::RowDescription(parse_row_description(&mut r)?),
            b'D' => BackendMessage::DataRow(parse_data_row(&mut r)?),
            b'C' => BackendMessage::CommandComplete(r.cstr("command tag")?),
            b'I' => BackendMessage::EmptyQueryResponse,
            b'W' | b'H' | b'G' => {
                let _format = r.u8("copy format")?;
                let n = r.i16("copy column count")?;
                if n < 0 {
                    return Err(r.invalid("copy column count", n.to_string()));
                }
                r.skip(2 * n as usize, "copy column formats")?;
                match frame.tag {
                    b'W' => BackendMessage::CopyBothResponse,
                    b'H' => BackendMessage::CopyOutResponse,
                    _ => BackendMessage::CopyInResponse,
                }
            }
            b'd' => BackendMessage::CopyData(r.rest()),
            b'c' => BackendMessage::CopyDone,
            b'v' => {
                let minor = r.i32("protocol minor version")?;
                let _ = r.rest();
                BackendMessage::NegotiateProtocolVersion { minor }
            }
            b'A' => {
                let _ = r.rest();
                BackendMessage::NotificationResponse
            }
            other => {
                return Err(DecodeError {
                    offset: 0,
                    kind: DecodeErrorKind::UnknownTag(TagByte(other)),
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

fn parse_authentication(r: &mut Reader) -> Result<Authentication, DecodeError> {
    Ok(match r.i32("authentication code")? {
        0 => Authentication::Ok,
        3 => Authentication::CleartextPassword,
        5 => {
            let salt = r.bytes(4, "md5 salt")?;
            Authentication::Md5Password {
                salt: [salt[0], salt[1], salt[2], salt[3]],
            }
        }
        10 => {
            let mut mechanisms = Vec::new();
            loop {
                let m = r.cstr("SASL mechanism")?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(m);
            }
            Authentication::Sasl { mechanisms }
        }
        11 => Authentication::SaslContinue(r.rest()),
        12 => Authentication::SaslFinal(r.rest()),
        code => {
            let _ = r.rest();
            Authentication::Unsupported(code)
        }
    })
}

fn parse_fields(r: &mut Reader) -> Result<ServerError, DecodeError> {
    let mut e = ServerError::default();
    let mut localized_severity = String::new();
    loop {
        let t = r.u8("error field type")?;
        if t == 0 {
            break;
        }
        // Messages may carry text in the server's encoding before client_encoding is
        // settled (startup failures); never fail on that, show it lossily.
        let raw = r.cstr_bytes("error field")?;
        let v = String::from_utf8_lossy(&raw).into_owned();
        match t {
            b'V' => e.severity = v,
            b'S' => localized_severity = v,
            b'C' => e.code = v,
            b'M' => e.message = v,
            b'D' => e.detail = Some(v),
            b'H' => e.hint = Some(v),
            b'W' => e.context = Some(v),
            _ => {}
        }
    }
    if e.severity.is_empty() {
        e.severity = localized_severity;
    }
    Ok(e)
}

fn parse_row_description(r: &mut Reader) -> Result<Vec<FieldDescription>, DecodeError> {
    let n = r.i16("field count")?;
    if n < 0 {
        return Err(r.invalid("field count", n.to_string()));
    }
    // Each field takes at least 19 bytes; never reserve more than the body can hold.
    let mut fields = Vec::with_capacity((n as usize).min(r.remaining() / 19));
    for _ in 0..n {
        let name = r.cstr("field name")?;
        r.skip(4 + 2, "table oid and column number")?;
        let type_oid = r.u32("type oid")?;
        r.skip(2 + 4 + 2, "type size, modifier and format")?;
        fields.push(FieldDescription { name, type_oid });
    }
    Ok(fields)
}

fn parse_data_row(r: &mut Reader) -> Result<Vec<Option<Bytes>>, DecodeError> {
    let n = r.i16("column count")?;
    if n < 0 {
        return Err(r.invalid("column count", n.to_string()));
    }
    let mut values = Vec::with_capacity((n as usize).min(r.remaining() / 4));
    for _ in 0..n {
        let len = r.i32("value length")?;
        values.push(match len {
            -1 => None,
            l if l < 0 => return Err(r.invalid("value length", l.to_string())),
            l => Some(r.bytes(l as usize, "value")?),
        });
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tag: u8, body: &'static [u8]) -> Result<BackendMessage, DecodeError> {
        BackendMessage::parse(Frame {
            tag,
            body: Bytes::from_static(body),
        })
    }

    #[test]
    fn error_response_fields_are_named() {
        let msg = parse(
            b'E',
            b"SERROR\0VERROR\0C28P01\0Mpassword authentication failed for user \"x\"\0Dd\0Hh\0\0",
        )
        .unwrap();
        let BackendMessage::ErrorResponse(e) = msg else {
            panic!()
        };
        assert_eq!(e.severity, "ERROR");
        assert_eq!(e.code, "28P01");
        assert_eq!(e.detail.as_deref(), Some("d"));
        assert_eq!(e.hint.as_deref(), Some("h"));
        assert!(e.to_string().contains("SQLSTATE 28P01"));
    }

    #[test]
    fn error_response_without_final_nul_is_truncated() {
        assert!(parse(b'E', b"SERROR\0").is_err());
    }

    #[test]
    fn sasl_mechanisms_are_listed() {
        let msg = parse(b'R', b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0").unwrap();
        assert_eq!(
            msg,
            BackendMessage::Authentication(Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()]
            })
        );
    }

    #[test]
    fn md5_salt_must_be_four_bytes() {
        assert!(parse(b'R', b"\0\0\0\x05abc").is_err());
        assert_eq!(
            parse(b'R', b"\0\0\0\x05abcd").unwrap(),
            BackendMessage::Authentication(Authentication::Md5Password { salt: *b"abcd" })
        );
    }

    #[test]
    fn data_row_with_null_and_values() {
        let msg = parse(b'D', b"\0\x02\xff\xff\xff\xff\0\0\0\x02hi").unwrap();
        assert_eq!(
            msg,
            BackendMessage::DataRow(vec![None, Some(Bytes::from_static(b"hi"))])
        );
    }

    #[test]
    fn data_row_count_larger_than_body_is_refused_without_allocating() {
        let err = parse(b'D', b"\x7f\xff").unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::Truncated { .. }));
    }

    #[test]
    fn data_row_with_negative_length_other_than_null_is_invalid() {
        assert!(parse(b'D', b"\0\x01\xff\xff\xff\xfe").is_err());
    }

    #[test]
    fn copy_both_response_is_recognised() {
        assert_eq!(
            parse(b'W', b"\0\0\0").unwrap(),
            BackendMessage::CopyBothResponse
        );
    }

    #[test]
    fn unknown_tag_is_refused() {
        assert!(matches!(
            parse(b'?', b"").unwrap_err().kind,
            DecodeErrorKind::UnknownTag(TagByte(b'?'))
        ));
    }
}
