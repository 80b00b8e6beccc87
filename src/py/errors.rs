//! The one place Rust errors become Python exceptions (classes defined in
//! `geneva/exceptions.py`), with the Rust source chain in the message.

use crate::backfill::BackfillError;
use crate::table::{FilterError, TableError};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Raises `geneva.exceptions.<class_name>(message)`.
pub(crate) fn geneva_error(class_name: &str, message: String) -> PyErr {
    Python::attach(|py| {
        let class = py.import("geneva.exceptions").and_then(|m| m.getattr(class_name));
        match class.and_then(|c| c.call1((message.clone(),))) {
            Ok(instance) => PyErr::from_value(instance),
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}

fn with_sources(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

pub fn table_error(err: TableError) -> PyErr {
    let class = match &err {
        TableError::NotFound { .. } => "TableNotFoundError",
        TableError::AlreadyExists { .. } => "TableExistsError",
        TableError::UnknownColumn { .. } | TableError::Filter(FilterError::UnknownColumn { .. }) => {
            "ColumnNotFoundError"
        }
        TableError::Filter(FilterError::Parse { .. }) => "FilterSyntaxError",
        TableError::Filter(FilterError::Type { .. }) => "FilterTypeError",
        TableError::ColumnExists(_) => "ColumnExistsError",
        TableError::Invalid(_) => "InvalidInputError",
        TableError::Lance(_) | TableError::Arrow(_) => "StorageError",
    };
    geneva_error(class, with_sources(&err))
}

pub fn backfill_error(err: BackfillError) -> PyErr {
    match err {
        BackfillError::Table(e) => table_error(e),
        other => geneva_error("BackfillError", with_sources(&other)),
    }
}
