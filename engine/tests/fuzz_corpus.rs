//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! fuzz targets' own checks (`fuzz/src/checks.rs`), on stable and without
//! cargo-fuzz, so every input a fuzzer once kept (and every crash it found,
//! once minimised into the corpus) is checked by `cargo test`.

#[path = "../../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;

use std::path::PathBuf;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("read a corpus file");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "corpus input {} fails its check",
            file.display()
        );
    }
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn frames_corpus() {
    replay("frames", checks::frames);
}

#[test]
fn http_upgrade_corpus() {
    replay("http_upgrade", checks::http_upgrade);
}

#[test]
fn extraction_corpus() {
    replay("extraction", checks::extraction);
}

#[test]
fn topic_table_corpus() {
    replay("topic_table", checks::topic_table);
}

#[test]
fn outbox_corpus() {
    replay("outbox", checks::outbox);
}
