//! Whether a destination column can take a source column's values, as the built-in
//! worker would take them: each value arrives as the source type's text and goes through
//! the destination type's input function. Pure logic over type OIDs and modifiers.
//!
//! | source → destination                                   | verdict                 |
//! |--------------------------------------------------------|-------------------------|
//! | the same type, the destination's modifier as wide      | same                    |
//! | any type → `text`, unbounded `varchar`                 | accepted                |
//! | `varchar`/`char` ↔ `text`, `cidr` → `inet`, integers widening, integer → `numeric`, `int2`/`int4` → `float8`, `float4` → `float8` | accepted |
//! | a narrower modifier, integers narrowing, `numeric` → integer, `float8` → `float4`, `int8` → `float8`, floats ↔ `numeric`, `inet` → `cidr`, `json` ↔ `jsonb`, `timestamp` ↔ `timestamptz`, anything → bounded `varchar`/`char` | accepted with a warning: values can be rejected, rounded or rewritten |
//! | anything else                                          | refused, both types named |

/// What pgsub makes of a pair of column types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compat {
    /// The same type.
    Same,
    /// Every source value reads as the same value.
    Accepted,
    /// Some values can be rejected, rounded or rewritten: why.
    Warn(&'static str),
    /// The destination type does not take the source's values.
    Refused,
}

/// A column type: OID, modifier, and its name as `format_type` spells it with the
/// modifier (user types are compared by that name, their OIDs differ between servers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnType<'a> {
    /// Type OID.
    pub oid: u32,
    /// `atttypmod`, -1 for none.
    pub typmod: i32,
    /// `format_type(oid, typmod)`.
    pub sql: &'a str,
}

const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const JSON: u32 = 114;
const CIDR: u32 = 650;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const INET: u32 = 869;
const BPCHAR: u32 = 1042;
const VARCHAR: u32 = 1043;
const TIME: u32 = 1083;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const INTERVAL: u32 = 1186;
const TIMETZ: u32 = 1266;
const BIT: u32 = 1560;
const VARBIT: u32 = 1562;
const NUMERIC: u32 = 1700;
const JSONB: u32 = 3802;

/// OIDs below this are built-in types, the same on every server.
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

fn is_string(oid: u32) -> bool {
    matches!(oid, TEXT | VARCHAR | BPCHAR)
}

fn int_width(oid: u32) -> Option<u8> {
    match oid {
        INT2 => Some(2),
        INT4 => Some(4),
        INT8 => Some(8),
        _ => None,
    }
}

/// Whether the destination's modifier is narrower than the source's for values of
/// `oid`: too long rejected, digits rounded.
fn narrower(oid: u32, source: i32, dest: i32) -> bool {
    if dest < 0 {
        return false;
    }
    match oid {
        // Length + 4 (character types) or the length (bit types).
        VARCHAR | BPCHAR | BIT | VARBIT => source < 0 || source > dest,
        NUMERIC => {
            if source < 0 {
                return true;
            }
            let (sp, ss) = (((source - 4) >> 16) & 0xffff, (source - 4) & 0xffff);
            let (dp, ds) = (((dest - 4) >> 16) & 0xffff, (dest - 4) & 0xffff);
            ds < ss || dp - ds < sp - ss
        }
        // Fractional digits of seconds; none means 6.
        TIME | TIMETZ | TIMESTAMP | TIMESTAMPTZ => {
            let s = if source < 0 { 6 } else { source };
            dest < s
        }
        INTERVAL => {
            let precision = |t: i32| if t < 0 { 6 } else { t & 0xffff };
            let fields = |t: i32| if t < 0 { 0x7fff } else { (t >> 16) & 0x7fff };
            precision(dest) < precision(source) || fields(dest) & fields(source) != fields(source)
        }
        _ => source != dest,
    }
}

/// The verdict for values of `source` written to `dest`.
pub fn compat(source: ColumnType<'_>, dest: ColumnType<'_>) -> Compat {
    let user = source.oid >= FIRST_NORMAL_OBJECT_ID || dest.oid >= FIRST_NORMAL_OBJECT_ID;
    if source.sql == dest.sql && (user || source.oid == dest.oid) {
        return Compat::Same;
    }
    if source.oid == dest.oid && !user {
        return if narrower(source.oid, source.typmod, dest.typmod) {
            Compat::Warn(
                "the destination's type is narrower: a value too long is rejected, digits beyond its precision are rounded",
            )
        } else {
            Compat::Accepted
        };
    }
    if user {
        return Compat::Refused;
    }
    let unbounded = |d: ColumnType<'_>| d.oid == TEXT || (d.oid == VARCHAR && d.typmod < 0);
    match (source.oid, dest.oid) {
        _ if unbounded(dest) && is_string(source.oid) => Compat::Accepted,
        _ if unbounded(dest) => Compat::Accepted,
        (s, VARCHAR | BPCHAR) if is_string(s) => {
            if s == BPCHAR && dest.oid == VARCHAR && !narrower(VARCHAR, source.typmod, dest.typmod)
            {
                Compat::Accepted
            } else {
                Compat::Warn("a value longer than the destination's length is rejected")
            }
        }
        (_, VARCHAR | BPCHAR) => {
            Compat::Warn("a value longer than the destination's length is rejected")
        }
        (CIDR, INET) => Compat::Accepted,
        (INET, CIDR) => Compat::Warn("an address with bits set right of its netmask is rejected"),
        (s, d) if int_width(s).is_some() && int_width(d).is_some() => {
            if int_width(s) < int_width(d) {
                Compat::Accepted
            } else {
                Compat::Warn("a value out of the destination's range is rejected")
            }
        }
        (s, NUMERIC) if int_width(s).is_some() => {
            if dest.typmod < 0 {
                Compat::Accepted
            } else {
                Compat::Warn("a value beyond the destination's precision is rejected")
            }
        }
        (NUMERIC, d) if int_width(d).is_some() => {
            Compat::Warn("a fraction is rounded, a value out of range rejected")
        }
        (INT2 | INT4, FLOAT8) | (FLOAT4, FLOAT8) => Compat::Accepted,
        (INT8, FLOAT8) | (INT2 | INT4 | INT8, FLOAT4) | (FLOAT8, FLOAT4) => {
            Compat::Warn("digits beyond the destination's precision are rounded")
        }
        (FLOAT4 | FLOAT8, NUMERIC) | (NUMERIC, FLOAT4 | FLOAT8) => {
            Compat::Warn("digits are rounded, and NaN or an infinity may be rejected")
        }
        (JSON, JSONB) | (JSONB, JSON) => Compat::Warn(
            "jsonb rewrites the text (whitespace, key order, duplicate keys), so verify reports those rows",
        ),
        (TIMESTAMP, TIMESTAMPTZ) | (TIMESTAMPTZ, TIMESTAMP) => {
            Compat::Warn("the time zone is added or dropped by the destination session's TimeZone")
        }
        (BIT, VARBIT) => Compat::Accepted,
        (VARBIT, BIT) => Compat::Warn("a bit string of another length is rejected"),
        (BOOL | BYTEA, _) | (_, BOOL | BYTEA) => Compat::Refused,
        _ => Compat::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(oid: u32, typmod: i32, sql: &str) -> ColumnType<'_> {
        ColumnType { oid, typmod, sql }
    }

    #[test]
    fn text_takes_anything_and_varchar_to_text_is_accepted() {
        assert_eq!(
            compat(t(VARCHAR, 14, "character varying(10)"), t(TEXT, -1, "text")),
            Compat::Accepted
        );
        assert_eq!(
            compat(t(INT4, -1, "integer"), t(TEXT, -1, "text")),
            Compat::Accepted
        );
        assert_eq!(
            compat(t(TEXT, -1, "text"), t(VARCHAR, -1, "character varying")),
            Compat::Accepted
        );
    }

    #[test]
    fn narrower_destinations_are_warned_about() {
        assert!(matches!(
            compat(t(TEXT, -1, "text"), t(VARCHAR, 9, "character varying(5)")),
            Compat::Warn(_)
        ));
        assert!(matches!(
            compat(
                t(VARCHAR, 14, "character varying(10)"),
                t(VARCHAR, 9, "character varying(5)")
            ),
            Compat::Warn(_)
        ));
        assert_eq!(
            compat(
                t(VARCHAR, 9, "character varying(5)"),
                t(VARCHAR, 14, "character varying(10)")
            ),
            Compat::Accepted
        );
        assert!(matches!(
            compat(t(NUMERIC, -1, "numeric"), t(INT4, -1, "integer")),
            Compat::Warn(_)
        ));
        let n = |p: i32, s: i32| ((p << 16) | s) + 4;
        assert!(matches!(
            compat(
                t(NUMERIC, n(10, 3), "numeric(10,3)"),
                t(NUMERIC, n(10, 2), "numeric(10,2)")
            ),
            Compat::Warn(_)
        ));
        assert_eq!(
            compat(
                t(NUMERIC, n(5, 2), "numeric(5,2)"),
                t(NUMERIC, n(10, 2), "numeric(10,2)")
            ),
            Compat::Accepted
        );
        assert!(matches!(
            compat(t(INT8, -1, "bigint"), t(INT4, -1, "integer")),
            Compat::Warn(_)
        ));
        assert_eq!(
            compat(t(INT4, -1, "integer"), t(INT8, -1, "bigint")),
            Compat::Accepted
        );
    }

    #[test]
    fn unrelated_types_and_user_types_of_other_names_are_refused() {
        assert_eq!(
            compat(t(INT4, -1, "integer"), t(BOOL, -1, "boolean")),
            Compat::Refused
        );
        assert_eq!(
            compat(t(TEXT, -1, "text"), t(INT4, -1, "integer")),
            Compat::Refused
        );
        assert_eq!(
            compat(t(16500, -1, "mood"), t(16400, -1, "mood")),
            Compat::Same
        );
        assert_eq!(
            compat(t(16500, -1, "mood"), t(16400, -1, "feeling")),
            Compat::Refused
        );
        assert_eq!(
            compat(t(INT4, -1, "integer"), t(INT4, -1, "integer")),
            Compat::Same
        );
    }
}
