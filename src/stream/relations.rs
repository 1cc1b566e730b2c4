//! The relations and types the stream has described, by source OID.
//!
//! A Relation message arrives before the first row of a relation in a session and again
//! whenever its definition changed; the newest one wins, because rows always follow the
//! description that applies to them. Row messages are checked against it: a row of a
//! relation never described, or with a different number of columns, means the stream and
//! pgsub's view of it disagree, and nothing downstream could apply it correctly.

use std::collections::HashMap;

use super::positions::InvariantViolation;
use crate::pgoutput::{PgOutput, Relation, TupleData, Type};

/// Relations and types by OID.
#[derive(Debug, Clone, Default)]
pub struct RelationCache {
    relations: HashMap<u32, Relation>,
    types: HashMap<u32, Type>,
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
        self.get(relid)
            .map(|r| format!("{}.{}", r.schema(), r.name))
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
