//! Decode throughput benchmark (written later in this change).
fn main() {}
