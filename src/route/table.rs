//! Code tables: CSV files under `config/tables/` that `map` steps look values up in.
//!
//! ```text
//! # config/tables/sex.csv — the first row names the columns; the first column is the key.
//! from,to,display
//! M,male,Male
//! F,female,Female
//! ```
//!
//! A `map` step reads the column it names (`column = "display"`), or the second column. Keys
//! are compared exactly after trimming spaces; a key listed twice is an error, so a table never
//! means two things.

use std::collections::HashMap;
use std::path::Path;

/// A loaded code table.
#[derive(Debug, Clone)]
pub struct CodeTable {
    /// The file it came from (for messages).
    pub file: String,
    columns: Vec<String>,
    rows: HashMap<String, Vec<String>>,
}

impl CodeTable {
    /// Loads and checks a CSV table.
    pub fn load(path: &Path) -> Result<CodeTable, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        CodeTable::parse(&path.display().to_string(), &text)
    }

    /// Parses CSV text (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<CodeTable, String> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .flexible(false)
            .from_reader(text.as_bytes());
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| format!("{file}: {e}"))?
            .iter()
            .map(str::to_string)
            .collect();
        if columns.len() < 2 {
            return Err(format!(
                "{file}: a code table needs a header row with at least two columns (e.g. `from,to`)"
            ));
        }
        let mut rows = HashMap::new();
        for record in reader.records() {
            let record = record.map_err(|e| format!("{file}: {e}"))?;
            let line = record.position().map_or(0, |p| p.line());
            let key = record.get(0).unwrap_or("").to_string();
            let values: Vec<String> = record.iter().map(str::to_string).collect();
            if rows.insert(key.clone(), values).is_some() {
                return Err(format!(
                    "{file}: line {line}: the key `{key}` is listed twice"
                ));
            }
        }
        Ok(CodeTable {
            file: file.to_string(),
            columns,
            rows,
        })
    }

    /// The index of a value column by name (`None`: the second column).
    pub fn column(&self, name: Option<&str>) -> Result<usize, String> {
        match name {
            None => Ok(1),
            Some(n) => self
                .columns
                .iter()
                .position(|c| c == n)
                .filter(|&i| i > 0)
                .ok_or_else(|| {
                    format!(
                        "table {} has no value column `{n}` (columns: {})",
                        self.file,
                        self.columns[1..].join(", ")
                    )
                }),
        }
    }

    /// The value for `key` in column `column`.
    pub fn lookup(&self, key: &str, column: usize) -> Option<&str> {
        self.rows
            .get(key.trim())
            .and_then(|r| r.get(column))
            .map(String::as_str)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_errors() {
        let t = CodeTable::parse(
            "sex.csv",
            "# comment\nfrom,to,display\nM, male ,Male\nF,female,Female\n",
        )
        .unwrap();
        assert_eq!(t.lookup("M", 1), Some("male"));
        assert_eq!(
            t.lookup(" F ", t.column(Some("display")).unwrap()),
            Some("Female")
        );
        assert_eq!(t.lookup("X", 1), None);
        assert_eq!(t.len(), 2);
        assert!(t.column(Some("from")).is_err());
        assert!(t
            .column(Some("nope"))
            .unwrap_err()
            .contains("columns: to, display"));
        assert!(CodeTable::parse("a.csv", "from,to\nM,1\nM,2\n")
            .unwrap_err()
            .contains("line 3: the key `M` is listed twice"));
        assert!(CodeTable::parse("a.csv", "from\nM\n").is_err());
        assert!(CodeTable::parse("a.csv", "from,to\nM,1,extra\n").is_err());
    }
}
