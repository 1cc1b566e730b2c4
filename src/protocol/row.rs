//! One row of a query result in text format: how every plain SQL result is read, on the
//! replication connection's simple queries and on `tokio-postgres` sessions alike. Values
//! by position (`row[0]`, [`Row::get_idx`]) or by column name ([`Row::get`]).

use std::sync::Arc;

/// One row of a simple-query result, values in text format.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Option<String>>,
}

/// A row reads as the slice of its values: `row[0]`, `row[..n]`, `row.iter()`.
impl std::ops::Deref for Row {
    type Target = [Option<String>];

    fn deref(&self) -> &[Option<String>] {
        &self.values
    }
}

impl Row {
    /// A row of `values` named by `columns`.
    pub fn new(columns: Arc<[String]>, values: Vec<Option<String>>) -> Self {
        Row { columns, values }
    }

    /// The values, owned.
    pub fn into_values(self) -> Vec<Option<String>> {
        self.values
    }

    /// The value of a column by name; `None` for NULL or an unknown column.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == name)?;
        self.values.get(i)?.as_deref()
    }

    /// The value of a column by position.
    pub fn get_idx(&self, i: usize) -> Option<&str> {
        self.values.get(i)?.as_deref()
    }

    /// Column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
}
