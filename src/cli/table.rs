//! Plain tables for a terminal or a log: left-aligned columns, no borders, as `kubectl get`
//! and DCM's CLI print them.

use comfy_table::{presets, Table};

/// A table with these column headers; print it with `{}`.
pub fn new(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(header.to_vec());
    table
}

/// The table's text: columns `gap` spaces apart, no trailing spaces, ending in a newline.
pub fn text(table: &mut Table, gap: u16) -> String {
    for column in table.column_iter_mut() {
        column.set_padding((0, gap));
    }
    let mut text = table.trim_fmt();
    text.push('\n');
    text
}
