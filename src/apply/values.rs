//! Column values as the destination receives them: in the format the stream carried them
//! (`text` output, or with `sync --binary` the type's `send` output), never converted.
//!
//! ```text
//! one value      Param          a statement parameter of that format (whole-row matches)
//! a run's column ValueArray     an array parameter in PostgreSQL's binary array format
//!                               whose elements are the values: text[] for text, the
//!                               column's own type[] for binary (element OID from the
//!                               statement's parameter type)
//! inserts        COPY text rows, or COPY binary (signature, tuples, trailer)
//! messages       show(): text as is; binary decoded for the common key types, else \x hex
//! ```
//!
//! Which columns may travel in binary is [`binary_refusal`]'s rule, the one `sync`
//! checks before it asks for a binary stream and again for every Relation message.

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{Format, IsNull, Kind, ToSql, Type, to_sql_checked};

use super::table::DestColumn;

/// The format of every value of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueFormat {
    /// The types' text output (the default of pgoutput and of the built-in subscription).
    #[default]
    Text,
    /// The types' binary (`send`) output: pgoutput's `binary` option (14+).
    Binary,
}

impl ValueFormat {
    /// `binary` or `text`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ValueFormat::Text => "text",
            ValueFormat::Binary => "binary",
        }
    }

    fn wire(self) -> Format {
        match self {
            ValueFormat::Text => Format::Text,
            ValueFormat::Binary => Format::Binary,
        }
    }
}

/// The first OID the server assigns to objects users create: below it, a type is
/// built in and is the same type on every server.
pub const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// Why a column whose source type has OID `source_oid` cannot travel in binary into
/// `dest`, or `None` when it can: its binary form must be read by the destination as the
/// source wrote it. That holds for a built-in type (the same OID is the same type
/// everywhere) that is the destination column's type and has binary input and output;
/// not for a user type (an enum, a domain, a composite: their OIDs differ between
/// servers, and composites and arrays carry member OIDs in their binary form, which the
/// receiving side checks), nor for an array (sync's set-based statements pass a run's
/// values of a column as one array, and an array of arrays is not one in PostgreSQL).
pub fn binary_refusal(source_oid: u32, dest: &DestColumn) -> Option<String> {
    if source_oid >= FIRST_NORMAL_OBJECT_ID {
        return Some(
            "its type is a user-defined type, whose binary form can differ between servers".into(),
        );
    }
    if dest.type_oid != source_oid {
        return Some(format!(
            "its type differs on the destination ({})",
            dest.type_sql
        ));
    }
    if dest.array {
        return Some("it is an array, which sync applies in text".into());
    }
    if !dest.binary_io {
        return Some(format!(
            "its type {} has no binary input or output function",
            dest.type_sql
        ));
    }
    None
}

/// One value as a statement parameter, sent in the format it arrived in (`None`: NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The value's bytes.
    pub value: Option<Vec<u8>>,
    /// Their format.
    pub format: ValueFormat,
}

impl ToSql for Param {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.value {
            None => Ok(IsNull::Yes),
            Some(v) => {
                out.put_slice(v);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        self.format.wire()
    }

    to_sql_checked!();
}

/// One array parameter of a run, kept in PostgreSQL's binary array format as values
/// arrive: one buffer per column, no allocation per value. Its element type is the
/// statement's parameter's (`text` for text values, the column's type for binary ones).
#[derive(Debug, Default)]
pub struct ValueArray {
    elements: BytesMut,
    len: i32,
    has_null: bool,
    format: ValueFormat,
    type_oid: u32,
}

impl ValueArray {
    /// An empty array of values of `format`, of a column of type `type_oid` (for
    /// showing them).
    pub fn new(format: ValueFormat, type_oid: u32) -> Self {
        ValueArray {
            format,
            type_oid,
            ..ValueArray::default()
        }
    }

    /// Appends a value (`None`: NULL).
    pub fn push(&mut self, v: Option<&[u8]>) {
        match v {
            None => {
                self.elements.put_i32(-1);
                self.has_null = true;
            }
            Some(v) => {
                self.elements.put_i32(v.len() as i32);
                self.elements.put_slice(v);
            }
        }
        self.len += 1;
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Bytes it holds, for bounding what is in flight.
    pub fn byte_len(&self) -> usize {
        self.elements.len()
    }

    /// The value at `index` (`Some(None)`: NULL), read back from the buffer: for
    /// messages about a run, off the per-row path.
    pub fn get(&self, index: usize) -> Option<Option<&[u8]>> {
        let mut at = 0usize;
        for i in 0..self.len() {
            let len_bytes: [u8; 4] = self.elements.get(at..at + 4)?.try_into().ok()?;
            let len = i32::from_be_bytes(len_bytes);
            at += 4;
            let value = if len < 0 {
                None
            } else {
                let v = self.elements.get(at..at + len as usize)?;
                at += len as usize;
                Some(v)
            };
            if i == index {
                return Some(value);
            }
        }
        None
    }

    /// The value at `index` as a message shows it.
    pub fn show(&self, index: usize) -> String {
        show(self.get(index).flatten(), self.format, self.type_oid)
    }
}

impl ToSql for ValueArray {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let element = match ty.kind() {
            Kind::Array(member) => member.oid(),
            _ => return Err(format!("a run's values sent as {ty}, not an array").into()),
        };
        // ndim, has-null flag, element type, then the one dimension: length, lower bound.
        out.put_i32(1);
        out.put_i32(i32::from(self.has_null));
        out.put_u32(element);
        out.put_i32(self.len);
        out.put_i32(1);
        out.put_slice(&self.elements);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Array(_))
    }

    to_sql_checked!();
}

/// The signature, flags and header extension that begin COPY binary data.
pub const COPY_BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The field count -1 that ends COPY binary data.
pub const COPY_BINARY_TRAILER: &[u8] = &[0xff, 0xff];

/// Appends one COPY binary tuple of `values`.
pub fn copy_binary_row<'a>(
    values: impl ExactSizeIterator<Item = Option<&'a [u8]>>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for v in values {
        match v {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
}

/// The tuples of COPY binary data as [`copy_binary_row`] writes them (after
/// [`COPY_BINARY_HEADER`]), column by column into `cols`: the inverse, for the rows of a
/// COPY that failed. Stops at the trailer or at anything it cannot read.
pub fn copy_binary_columns(data: &[u8], cols: &mut [ValueArray]) {
    let mut at = data
        .strip_prefix(COPY_BINARY_HEADER)
        .map_or(data.len(), |_| COPY_BINARY_HEADER.len());
    let mut take = |n: usize| {
        let v = data.get(at..at + n)?;
        at += n;
        Some(v)
    };
    while let Some(count) = take(2) {
        let count = i16::from_be_bytes([count[0], count[1]]);
        if count < 0 || count as usize != cols.len() {
            return;
        }
        for col in cols.iter_mut() {
            let Some(len) = take(4) else { return };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            if len < 0 {
                col.push(None);
                continue;
            }
            let Some(v) = take(len as usize) else { return };
            col.push(Some(v));
        }
    }
}

/// A value as messages show it: `null`; text as is; binary decoded for the types keys
/// are mostly made of, else `\x` and its bytes in hex.
pub fn show(value: Option<&[u8]>, format: ValueFormat, type_oid: u32) -> String {
    let Some(v) = value else {
        return "null".to_owned();
    };
    if format == ValueFormat::Text {
        return String::from_utf8_lossy(v).into_owned();
    }
    let int = |v: &[u8]| -> Option<i64> {
        Some(match v.len() {
            2 => i64::from(i16::from_be_bytes(v.try_into().ok()?)),
            4 => i64::from(i32::from_be_bytes(v.try_into().ok()?)),
            8 => i64::from_be_bytes(v.try_into().ok()?),
            _ => return None,
        })
    };
    let shown = match type_oid {
        // int2, int4, int8
        21 | 23 | 20 => int(v).map(|n| n.to_string()),
        // oid
        26 => v.try_into().ok().map(|b| u32::from_be_bytes(b).to_string()),
        // bool
        16 => match v {
            [0] => Some("f".into()),
            [1] => Some("t".into()),
            _ => None,
        },
        // text, varchar, bpchar, name: their binary form is their text
        25 | 1043 | 1042 | 19 => std::str::from_utf8(v).ok().map(str::to_owned),
        // uuid
        2950 if v.len() == 16 => {
            let h = hex(v);
            Some(format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            ))
        }
        _ => None,
    };
    shown.unwrap_or_else(|| format!("\\x{}", hex(v)))
}

fn hex(v: &[u8]) -> String {
    use std::fmt::Write;
    v.iter()
        .fold(String::with_capacity(v.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(type_oid: u32, array: bool, binary_io: bool) -> DestColumn {
        DestColumn {
            name: "c".into(),
            type_oid,
            type_sql: "t".into(),
            typmod: -1,
            base_type_sql: "t".into(),
            generated: false,
            identity_always: false,
            array,
            binary_io,
        }
    }

    #[test]
    fn only_the_same_built_in_scalar_type_with_binary_io_travels_in_binary() {
        assert_eq!(binary_refusal(23, &dest(23, false, true)), None);
        let refused = |source: u32, d: DestColumn| binary_refusal(source, &d).is_some();
        assert!(refused(16390, dest(16390, false, true)), "user type");
        assert!(refused(23, dest(20, false, true)), "other type");
        assert!(refused(1007, dest(1007, true, true)), "array");
        assert!(refused(1033, dest(1033, false, false)), "no binary io");
    }

    #[test]
    fn value_array_is_postgres_binary_array_format_with_the_parameters_element_type() {
        let mut a = ValueArray::new(ValueFormat::Text, 25);
        a.push(Some(b"ab"));
        a.push(None);
        let mut out = BytesMut::new();
        a.to_sql(&Type::TEXT_ARRAY, &mut out).unwrap();
        let want: Vec<u8> = [
            &1i32.to_be_bytes()[..],
            &1i32.to_be_bytes(),
            &25u32.to_be_bytes(),
            &2i32.to_be_bytes(),
            &1i32.to_be_bytes(),
            &2i32.to_be_bytes(),
            b"ab",
            &(-1i32).to_be_bytes(),
        ]
        .concat();
        assert_eq!(&out[..], &want[..]);
        assert_eq!(a.len(), 2);
        assert_eq!(a.get(0), Some(Some(&b"ab"[..])));
        assert_eq!(a.get(1), Some(None));
        assert_eq!(a.get(2), None);
        // Sent as int4[], the header names int4.
        let mut b = ValueArray::new(ValueFormat::Binary, 23);
        b.push(Some(&7i32.to_be_bytes()));
        let mut out = BytesMut::new();
        b.to_sql(&Type::INT4_ARRAY, &mut out).unwrap();
        assert_eq!(&out[8..12], &23u32.to_be_bytes());
        assert_eq!(b.show(0), "7");
        assert!(b.to_sql(&Type::INT4, &mut BytesMut::new()).is_err());
    }

    #[test]
    fn copy_binary_rows_read_back_column_by_column() {
        let mut data = COPY_BINARY_HEADER.to_vec();
        copy_binary_row([Some(&b"\x00\x01"[..]), None].into_iter(), &mut data);
        copy_binary_row([Some(&b""[..]), Some(&b"x"[..])].into_iter(), &mut data);
        data.extend_from_slice(COPY_BINARY_TRAILER);
        let mut cols = vec![
            ValueArray::new(ValueFormat::Binary, 21),
            ValueArray::new(ValueFormat::Binary, 25),
        ];
        copy_binary_columns(&data, &mut cols);
        assert_eq!(cols[0].len(), 2);
        assert_eq!(cols[0].show(0), "1");
        assert_eq!(cols[0].get(1), Some(Some(&b""[..])));
        assert_eq!(cols[1].get(0), Some(None));
        assert_eq!(cols[1].show(1), "x");
        // Cut short, it reads what is whole and stops.
        let mut cols = vec![ValueArray::default(), ValueArray::default()];
        copy_binary_columns(&data[..data.len() - 4], &mut cols);
        assert_eq!(cols[0].len(), 2);
        assert_eq!(cols[1].len(), 1);
    }

    #[test]
    fn binary_values_are_shown_readably_for_common_key_types_else_in_hex() {
        let b = ValueFormat::Binary;
        assert_eq!(show(Some(&(-5i64).to_be_bytes()), b, 20), "-5");
        assert_eq!(show(Some(&[1]), b, 16), "t");
        assert_eq!(show(Some(b"caf\xc3\xa9"), b, 25), "café");
        let uuid: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            show(Some(&uuid), b, 2950),
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
        assert_eq!(show(Some(&[0xde, 0xad]), b, 1700), "\\xdead");
        assert_eq!(show(None, b, 23), "null");
        assert_eq!(show(Some(b"12"), ValueFormat::Text, 23), "12");
    }

    #[test]
    fn a_param_is_sent_in_its_own_format() {
        let p = Param {
            value: Some(vec![0, 0, 0, 1]),
            format: ValueFormat::Binary,
        };
        assert!(matches!(p.encode_format(&Type::INT4), Format::Binary));
        let mut out = BytesMut::new();
        assert!(matches!(p.to_sql(&Type::INT4, &mut out), Ok(IsNull::No)));
        assert_eq!(&out[..], &[0, 0, 0, 1]);
        let null = Param {
            value: None,
            format: ValueFormat::Text,
        };
        assert!(matches!(null.encode_format(&Type::TEXT), Format::Text));
        assert!(matches!(
            null.to_sql(&Type::TEXT, &mut BytesMut::new()),
            Ok(IsNull::Yes)
        ));
    }
}
