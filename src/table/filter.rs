//! Row filters (`where`): DataFusion SQL expressions, checked against a table's
//! columns before anything runs, so a typo gets a message naming the close
//! matches and a syntax error shows where it is.

use datafusion::sql::sqlparser::ast::{Expr, visit_expressions};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("cannot parse filter: {message}\n  {filter}\n  {caret}")]
    Parse { filter: String, message: String, caret: String },
    #[error("filter {filter:?} does not type-check against the table: {message}")]
    Type { filter: String, message: String },
    #[error("filter {filter:?} names unknown column {column:?}{hint}")]
    UnknownColumn { filter: String, column: String, hint: String, suggestions: Vec<String> },
}

/// Top-level column names a filter refers to, in first-seen order.
pub fn referenced_columns(filter: &str) -> Result<Vec<String>, FilterError> {
    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(filter)
        .and_then(|mut p| {
            let expr = p.parse_expr()?;
            // Trailing tokens ("a = 1 b") are an error, not silently ignored.
            p.expect_token(&datafusion::sql::sqlparser::tokenizer::Token::EOF)?;
            Ok(expr)
        })
        .map_err(|e| parse_error(filter, &e.to_string()))?;
    let mut seen = BTreeSet::new();
    let mut columns = Vec::new();
    let _ = visit_expressions(&expr, |e| {
        let name = match e {
            Expr::Identifier(ident) => Some(ident.value.clone()),
            Expr::CompoundIdentifier(parts) => parts.first().map(|p| p.value.clone()),
            _ => None,
        };
        if let Some(name) = name
            && seen.insert(name.clone())
        {
            columns.push(name);
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(columns)
}

/// Checks that every column the filter names is one of `columns`.
pub fn check_filter(filter: &str, columns: &[&str]) -> Result<(), FilterError> {
    for column in referenced_columns(filter)? {
        if !columns.contains(&column.as_str()) {
            return Err(unknown_column(filter, &column, columns));
        }
    }
    Ok(())
}

/// An "unknown column" error with the closest names in `columns` as hints.
pub fn unknown_column(filter: &str, column: &str, columns: &[&str]) -> FilterError {
    let suggestions = close_matches(column, columns);
    let hint = column_hint(&suggestions, columns);
    FilterError::UnknownColumn { filter: filter.into(), column: column.into(), hint, suggestions }
}

/// "; did you mean "x"?" with close matches, else the list of columns.
pub fn column_hint(suggestions: &[String], columns: &[&str]) -> String {
    if suggestions.is_empty() {
        format!("; the table's columns are: {}", columns.join(", "))
    } else {
        format!("; did you mean {}?", suggestions.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" or "))
    }
}

/// Names in `candidates` close to `name` (case-insensitive edit distance), best first.
pub fn close_matches(name: &str, candidates: &[&str]) -> Vec<String> {
    let lower = name.to_lowercase();
    let mut scored: Vec<(usize, &str)> = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1))
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, c)| c.to_owned()).collect()
}

/// Lance's "Invalid user input: ..., /path/file.rs:1:2" without the noise.
pub fn type_error(filter: &str, lance_message: &str) -> FilterError {
    let first = lance_message.split(", /").next().unwrap_or(lance_message);
    let mut message = first.replace("Invalid user input: ", "");
    if let Some(rest) = message.strip_prefix(&format!("Error resolving filter expression {filter}: ")) {
        message = rest.to_owned();
    }
    FilterError::Type { filter: filter.into(), message: message.trim().to_owned() }
}

/// sqlparser says "... at Line: 1, Column: 12": point at that column.
fn parse_error(filter: &str, message: &str) -> FilterError {
    let column = message
        .rsplit_once("Column: ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok());
    // No position means the input ended too soon: point past its end.
    let position = match column {
        Some(c) if c >= 1 => c - 1,
        _ => filter.chars().count(),
    };
    let caret = format!("{}^", " ".repeat(position));
    let message = message.trim_start_matches("sql parser error: ").to_owned();
    FilterError::Parse { filter: filter.into(), message, caret }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_columns_in_the_documented_filters() {
        let cases: [(&str, &[&str]); 5] = [
            ("starts_with(filename, 'a')", &["filename"]),
            ("content is not null", &["content"]),
            (
                "(starts_with(filename, 'a') or starts_with(filename, 'b')) and content is null",
                &["filename", "content"],
            ),
            ("x > 1 and y in (1, 2) and name like 'a%'", &["x", "y", "name"]),
            ("meta.source = 'cam'", &["meta"]),
        ];
        for (filter, expected) in cases {
            assert_eq!(referenced_columns(filter).unwrap(), expected, "{filter}");
        }
    }

    #[test]
    fn unknown_column_names_the_close_match() {
        let columns = ["filename", "content", "embedding"];
        let err = check_filter("content is not null and embeddding is not null", &columns).unwrap_err();
        let FilterError::UnknownColumn { column, suggestions, .. } = &err else { panic!("{err:?}") };
        assert_eq!(column, "embeddding");
        assert_eq!(suggestions, &["embedding"]);
        assert!(err.to_string().contains("did you mean \"embedding\"?"), "{err}");
    }

    #[test]
    fn far_off_names_list_the_columns() {
        let err = check_filter("zzz > 1", &["filename", "content"]).unwrap_err();
        assert!(err.to_string().ends_with("the table's columns are: filename, content"), "{err}");
    }

    #[test]
    fn lance_type_errors_lose_their_source_paths() {
        let raw = "lance: Invalid user input: Error resolving filter expression x > 5: Invalid user input: \
                   Received literal Int64(5) and could not convert to literal of type 'Utf8', /root/x.rs:23:88, /y.rs:1:1";
        let err = type_error("x > 5", raw.trim_start_matches("lance: "));
        assert_eq!(
            err.to_string(),
            "filter \"x > 5\" does not type-check against the table: \
             Received literal Int64(5) and could not convert to literal of type 'Utf8'"
        );
    }

    #[test]
    fn parse_errors_point_at_the_position() {
        let err = referenced_columns("starts_with(filename 'a')").unwrap_err();
        let FilterError::Parse { caret, message, .. } = &err else { panic!("{err:?}") };
        assert!(message.contains("Column"), "{message}");
        assert_eq!(caret.find('^'), Some(21), "{err}");
        assert!(matches!(referenced_columns("x = 1 y"), Err(FilterError::Parse { .. })));
        let Err(FilterError::Parse { caret, .. }) = referenced_columns("a = 1 and") else { panic!() };
        assert_eq!(caret, format!("{}^", " ".repeat(9)));
        assert!(matches!(referenced_columns(""), Err(FilterError::Parse { .. })));
    }
}
