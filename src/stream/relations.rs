//! The relations and types the stream has described, by source OID.
//!
//! A Relation message arrives before the first row of a relation in a session and again
//! whenever its definition changed; the newest one wins, because rows always follow the
//! description that applies to them. Row messages are checked against it: a row of a
//! relation never described, or with a different number of columns, means the stream and
//! pgsub's view of it disagree, and nothing downstream could apply it correctly.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::positions::InvariantViolation;
use crate::pgoutput::{PgOutput, Relation, TupleData, Type};

/// A hasher for OIDs, which the server assigns and nobody can choose to collide, and for
/// key fingerprints, where a collision costs only an early flush: one multiplication
/// instead of SipHash on the per-row path.
#[derive(Debug, Default, Clone, Copy)]
pub struct OidHasher(u64);

impl Hasher for OidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by OID.
pub type OidMap<V> = HashMap<u32, V, BuildHasherDefault<OidHasher>>;

/// Relations and types by OID.
#[derive(Debug, Clone, Default)]
pub struct RelationCache {
    relations: OidMap<Relation>,
    types: OidMap<Type>,
}

impl RelationCache {
    /// The newest description of a relation.
    pub fn get(&self, relid: u32) -> Option<&Relation> {
        self.relations.get(&relid)
    }

    /// A user type described by a Type message.
    pub fn get_type(&self, oid: u32) -> Option<&Type> {
        self.types.get(&oid)
    }

    /// `schema.table` of a relation.
    pub fn qualified_name(&self, relid: u32) -> Option<String> {
        self.get(relid).map(Relation::qualified_name)
    }

    /// Updates the cache from `msg` and checks row messages against it.
    pub fn on_message(&mut self, msg: &PgOutput) -> Result<(), InvariantViolation> {
        match msg {
            PgOutput::Relation(r) => {
                self.relations.insert(r.relid, r.clone());
            }
            PgOutput::Type(t) => {
                self.types.insert(t.type_oid, t.clone());
            }
            PgOutput::Insert(m) => self.check(msg, m.relid, [Some(&m.new), None])?,
            PgOutput::Update(m) => self.check(
                msg,
                m.relid,
                [Some(&m.new), m.old.as_ref().map(|o| o.tuple())],
            )?,
            PgOutput::Delete(m) => self.check(msg, m.relid, [Some(m.old.tuple()), None])?,
            _ => {}
        }
        Ok(())
    }

    fn check(
        &self,
        msg: &PgOutput,
        relid: u32,
        tuples: [Option<&TupleData>; 2],
    ) -> Result<(), InvariantViolation> {
        let Some(rel) = self.relations.get(&relid) else {
            return Err(InvariantViolation(format!(
                "{} for relation OID {relid}, which no Relation message described",
                msg.kind()
            )));
        };
        for t in tuples.into_iter().flatten() {
            if t.len() != rel.columns.len() {
                return Err(InvariantViolation(format!(
                    "{} for {}.{} has {} columns, its Relation message {}",
                    msg.kind(),
                    rel.schema(),
                    rel.name,
                    t.len(),
                    rel.columns.len()
                )));
            }
        }
        Ok(())
    }
}
