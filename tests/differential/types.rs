//! Column types of every family the random schemas use, and random values of each as SQL
//! literals: the awkward ones on purpose (NaN, -0, infinities, padding, zones, IPv6,
//! quotes, backslashes, tabs, newlines, non-ASCII text, NULLs inside arrays).

use super::rng::Rng;

/// User-defined types, created the same on the source and on both destinations.
pub const USER_TYPES: &str = "
CREATE TYPE diff_mood AS ENUM ('sad', 'ok', 'happy', 'très bien');
CREATE DOMAIN diff_pos AS integer CHECK (VALUE > 0);
CREATE TYPE diff_pair AS (a integer, b text);
";

/// A column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    Bool,
    Int2,
    Int4,
    Int8,
    Numeric,
    NumericPs(u8, u8),
    Float4,
    Float8,
    Char(u8),
    Varchar(u8),
    Text,
    Bytea,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Interval,
    Inet,
    Cidr,
    Macaddr,
    Uuid,
    Json,
    Jsonb,
    IntArray,
    IntArray2,
    TextArray,
    Enum,
    Domain,
    Composite,
    Int4Range,
    TstzRange,
}

/// Every payload type, for random choice.
pub const PAYLOAD: &[Ty] = &[
    Ty::Bool,
    Ty::Int2,
    Ty::Int4,
    Ty::Int8,
    Ty::Numeric,
    Ty::NumericPs(9, 3),
    Ty::NumericPs(4, 0),
    Ty::Float4,
    Ty::Float8,
    Ty::Char(5),
    Ty::Varchar(12),
    Ty::Text,
    Ty::Bytea,
    Ty::Date,
    Ty::Time,
    Ty::Timestamp,
    Ty::Timestamptz,
    Ty::Interval,
    Ty::Inet,
    Ty::Cidr,
    Ty::Macaddr,
    Ty::Uuid,
    Ty::Json,
    Ty::Jsonb,
    Ty::IntArray,
    Ty::IntArray2,
    Ty::TextArray,
    Ty::Enum,
    Ty::Domain,
    Ty::Composite,
    Ty::Int4Range,
    Ty::TstzRange,
];

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Random text: letters, digits, quotes, backslashes, tabs, newlines and non-ASCII
/// characters, `max` characters at most.
pub fn text(rng: &mut Rng, max: u64) -> String {
    const PIECES: &[&str] = &[
        "a", "b", "Z", "0", "7", " ", "'", "\"", "\\", "\t", "\n", "\r", ",", "{", "}", "(", ")",
        "é", "日本", "🙂", "ß", "NULL", "\\N",
    ];
    let n = rng.below(max + 1);
    let mut s = String::new();
    while (s.chars().count() as u64) < n {
        let piece: &&str = rng.pick(PIECES);
        s.push_str(piece);
    }
    s.chars().take(n as usize).collect()
}

fn digits_in(rng: &mut Rng, lo: i64, hi: i64) -> String {
    let n = rng.range(lo, hi) as u64;
    digits(rng, n)
}

fn digits(rng: &mut Rng, n: u64) -> String {
    (0..n.max(1))
        .map(|_| char::from(b'0' + rng.below(10) as u8))
        .collect()
}

fn two(rng: &mut Rng, hi: u64) -> String {
    format!("{:02}", rng.below(hi))
}

fn date(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => "infinity".into(),
        1 => "0044-03-15 BC".into(),
        2 => "2024-02-29".into(),
        _ => format!(
            "{:04}-{:02}-{:02}",
            rng.range(1, 9999),
            rng.range(1, 12),
            rng.range(1, 28)
        ),
    }
}

fn time(rng: &mut Rng) -> String {
    let mut t = format!("{}:{}:{}", two(rng, 24), two(rng, 60), two(rng, 60));
    if rng.percent(60) {
        t.push('.');
        t.push_str(&digits_in(rng, 1, 6));
    }
    t
}

fn float(rng: &mut Rng, exp: i64) -> String {
    match rng.below(14) {
        0 => "NaN".into(),
        1 => "Infinity".into(),
        2 => "-Infinity".into(),
        3 => "-0".into(),
        4 => "0.1".into(),
        5 => format!("1e-{}", exp + 5),
        _ => format!(
            "{}{}.{}e{}",
            if rng.percent(30) { "-" } else { "" },
            rng.range(1, 9),
            digits_in(rng, 1, 8),
            rng.range(-exp, exp)
        ),
    }
}

impl Ty {
    /// The type as DDL spells it.
    pub fn sql(&self) -> String {
        match self {
            Ty::Bool => "boolean".into(),
            Ty::Int2 => "smallint".into(),
            Ty::Int4 => "integer".into(),
            Ty::Int8 => "bigint".into(),
            Ty::Numeric => "numeric".into(),
            Ty::NumericPs(p, s) => format!("numeric({p},{s})"),
            Ty::Float4 => "real".into(),
            Ty::Float8 => "double precision".into(),
            Ty::Char(n) => format!("character({n})"),
            Ty::Varchar(n) => format!("character varying({n})"),
            Ty::Text => "text".into(),
            Ty::Bytea => "bytea".into(),
            Ty::Date => "date".into(),
            Ty::Time => "time without time zone".into(),
            Ty::Timestamp => "timestamp without time zone".into(),
            Ty::Timestamptz => "timestamp with time zone".into(),
            Ty::Interval => "interval".into(),
            Ty::Inet => "inet".into(),
            Ty::Cidr => "cidr".into(),
            Ty::Macaddr => "macaddr".into(),
            Ty::Uuid => "uuid".into(),
            Ty::Json => "json".into(),
            Ty::Jsonb => "jsonb".into(),
            Ty::IntArray => "integer[]".into(),
            Ty::IntArray2 => "integer[]".into(),
            Ty::TextArray => "text[]".into(),
            Ty::Enum => "diff_mood".into(),
            Ty::Domain => "diff_pos".into(),
            Ty::Composite => "diff_pair".into(),
            Ty::Int4Range => "int4range".into(),
            Ty::TstzRange => "tstzrange".into(),
        }
    }

    /// Whether the type has a default equality (REPLICA IDENTITY FULL without a key needs
    /// one to find rows).
    pub fn has_equality(&self) -> bool {
        !matches!(self, Ty::Json)
    }

    /// Whether values of the type can stream in binary (`sync --binary`): a built-in
    /// scalar type (not an array, nor a user type).
    pub fn binary_safe(&self) -> bool {
        !matches!(
            self,
            Ty::IntArray | Ty::IntArray2 | Ty::TextArray | Ty::Enum | Ty::Domain | Ty::Composite
        )
    }

    /// A random value as an SQL literal.
    pub fn literal(&self, rng: &mut Rng) -> String {
        let lit = match self {
            Ty::Bool => return rng.pick(&["true", "false"]).to_string(),
            Ty::Int2 => return rng.range(-32768, 32767).to_string(),
            Ty::Int4 => return rng.range(-2_147_483_648, 2_147_483_647).to_string(),
            Ty::Int8 => {
                return match rng.below(5) {
                    0 => "'-9223372036854775808'::bigint".into(),
                    _ => (rng.next_u64() as i64 / 3).to_string(),
                };
            }
            Ty::Numeric => match rng.below(8) {
                0 => "NaN".into(),
                1 => "0.000".into(),
                2 => format!("{}.{}", digits(rng, 30), digits(rng, 20)),
                _ => format!(
                    "{}{}.{}",
                    if rng.percent(30) { "-" } else { "" },
                    digits_in(rng, 1, 8),
                    digits_in(rng, 1, 6)
                ),
            },
            Ty::NumericPs(p, s) => {
                let int = u64::from(p - s).max(1);
                let mut v = format!(
                    "{}{}",
                    if rng.percent(30) { "-" } else { "" },
                    digits_in(rng, 1, int as i64)
                );
                if *s > 0 {
                    v.push('.');
                    v.push_str(&digits_in(rng, 1, i64::from(*s) + 2));
                }
                v
            }
            Ty::Float4 => float(rng, 37),
            Ty::Float8 => float(rng, 300),
            Ty::Char(n) => {
                let mut s = text(rng, u64::from(*n));
                if rng.percent(30) && s.chars().count() < usize::from(*n) {
                    s.push(' ');
                }
                s
            }
            Ty::Varchar(n) => text(rng, u64::from(*n)),
            Ty::Text => text(rng, 40),
            Ty::Bytea => {
                let n = rng.below(12);
                let hex: String = (0..n).map(|_| format!("{:02x}", rng.below(256))).collect();
                format!("\\x{hex}")
            }
            Ty::Date => date(rng),
            Ty::Time => time(rng),
            Ty::Timestamp => match rng.below(10) {
                0 => "-infinity".into(),
                _ => format!(
                    "{} {}",
                    date(rng).replace("infinity", "2000-01-01"),
                    time(rng)
                ),
            },
            Ty::Timestamptz => match rng.below(10) {
                0 => "infinity".into(),
                _ => format!(
                    "{} {}{}",
                    date(rng).replace("infinity", "1999-12-31"),
                    time(rng),
                    rng.pick(&["+00", "+05:30", "-08", "Z", "+14", "-03:30"])
                ),
            },
            Ty::Interval => match rng.below(6) {
                0 => "-3 days".into(),
                1 => "00:00:00.000001".into(),
                _ => format!(
                    "{} years {} mons {} days {}",
                    rng.range(-5, 100),
                    rng.range(0, 11),
                    rng.range(-40, 40),
                    time(rng)
                ),
            },
            Ty::Inet => match rng.below(5) {
                0 => "2001:db8::1".into(),
                1 => format!(
                    "10.{}.{}.{}/24",
                    rng.below(256),
                    rng.below(256),
                    rng.below(256)
                ),
                2 => "::ffff:1.2.3.4".into(),
                _ => format!("192.168.{}.{}", rng.below(256), rng.below(256)),
            },
            Ty::Cidr => rng
                .pick(&[
                    "10.0.0.0/8",
                    "2001:db8::/32",
                    "192.168.1.0/24",
                    "172.16.0.0/12",
                ])
                .to_string(),
            Ty::Macaddr => (0..6)
                .map(|_| format!("{:02x}", rng.below(256)))
                .collect::<Vec<_>>()
                .join(":"),
            Ty::Uuid => format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                rng.below(1 << 32),
                rng.below(1 << 16),
                rng.below(1 << 12),
                rng.below(1 << 12),
                rng.below(1 << 48)
            ),
            Ty::Json | Ty::Jsonb => rng
                .pick(&[
                    r#"{"a": 1, "b": [true, null]}"#,
                    r#"[1,2 , 3]"#,
                    r#""x""#,
                    r#"{"k": "é\u00e9", "n": 1.50}"#,
                    r#" {"dup": 1, "dup": 2} "#,
                    r#"{"nested": {"deep": ["x\ty", 2e3]}}"#,
                    "null",
                ])
                .to_string(),
            Ty::IntArray => match rng.below(4) {
                0 => "{}".into(),
                _ => format!(
                    "{{{}}}",
                    (0..rng.range(1, 5))
                        .map(|_| if rng.percent(20) {
                            "NULL".to_string()
                        } else {
                            rng.range(-1000, 1000).to_string()
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            },
            Ty::IntArray2 => format!(
                "{{{{{},{}}},{{{},NULL}}}}",
                rng.range(-9, 9),
                rng.range(-9, 9),
                rng.range(-9, 9)
            ),
            Ty::TextArray => {
                let elems: Vec<String> = (0..rng.range(0, 4))
                    .map(|_| {
                        if rng.percent(20) {
                            "NULL".into()
                        } else {
                            let t = text(rng, 6);
                            format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))
                        }
                    })
                    .collect();
                format!("{{{}}}", elems.join(","))
            }
            Ty::Enum => rng.pick(&["sad", "ok", "happy", "très bien"]).to_string(),
            Ty::Domain => rng.range(1, 100_000).to_string(),
            Ty::Composite => match rng.below(4) {
                0 => "(,)".into(),
                1 => format!("({},)", rng.range(-99, 99)),
                _ => {
                    let t = text(rng, 8);
                    format!(
                        "({},\"{}\")",
                        rng.range(-99, 99),
                        t.replace('\\', "\\\\").replace('"', "\\\"")
                    )
                }
            },
            Ty::Int4Range => match rng.below(5) {
                0 => "empty".into(),
                1 => format!("(,{}]", rng.range(-50, 50)),
                2 => format!("[{},)", rng.range(-50, 50)),
                _ => {
                    let a = rng.range(-100, 100);
                    format!("[{a},{})", a + rng.range(1, 20))
                }
            },
            Ty::TstzRange => {
                let d = rng.range(1, 27);
                format!("[\"2024-01-{d:02} 00:00+00\",\"2024-02-{d:02} 12:30+05\")")
            }
        };
        format!("{}::{}", quote(&lit), self.sql())
    }
}

#[test]
fn literals_are_quoted_and_typed() {
    let mut rng = Rng::new(1);
    for ty in PAYLOAD {
        for _ in 0..50 {
            let l = ty.literal(&mut rng);
            if l.starts_with('\'') {
                assert!(l.ends_with(&format!("::{}", ty.sql())), "{l}");
                let body = &l[1..l.rfind("'::").expect("typed")];
                assert!(!body.replace("''", "").contains('\''), "{l}");
            }
        }
    }
}
