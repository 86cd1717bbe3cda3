//! The benchmarks' corpus: the Microsoft FHIR-Converter sample messages in `../shared/testdata`.

use std::path::PathBuf;

/// Every sample message as UTF-8 text with CR segment terminators (blank lines and a BOM
/// dropped), in file-name order; each benchmark keeps the ones it can use.
pub fn sample_messages() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/microsoft-fhir-converter/data/SampleData/Hl7v2");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|text| {
            text.trim_start_matches('\u{feff}')
                .split(['\r', '\n'])
                .filter(|l| !l.trim().is_empty())
                .flat_map(|l| [l, "\r"])
                .collect()
        })
        .collect()
}
